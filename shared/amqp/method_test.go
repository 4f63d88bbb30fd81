package amqp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The method struct names the broker depends on; this fails to compile if
// the generator renames one.
var namedMethods = []Method{
	&ConnectionStart{}, &ConnectionStartOk{}, &ConnectionSecure{}, &ConnectionSecureOk{},
	&ConnectionTune{}, &ConnectionTuneOk{}, &ConnectionOpen{}, &ConnectionOpenOk{},
	&ConnectionClose{}, &ConnectionCloseOk{}, &ConnectionBlocked{}, &ConnectionUnblocked{},
	&ConnectionUpdateSecret{}, &ConnectionUpdateSecretOk{},
	&ChannelOpen{}, &ChannelOpenOk{}, &ChannelFlow{}, &ChannelFlowOk{}, &ChannelClose{}, &ChannelCloseOk{},
	&ExchangeDeclare{}, &ExchangeDeclareOk{}, &ExchangeDelete{}, &ExchangeDeleteOk{},
	&ExchangeBind{}, &ExchangeBindOk{}, &ExchangeUnbind{}, &ExchangeUnbindOk{},
	&QueueDeclare{}, &QueueDeclareOk{}, &QueueBind{}, &QueueBindOk{}, &QueuePurge{}, &QueuePurgeOk{},
	&QueueDelete{}, &QueueDeleteOk{}, &QueueUnbind{}, &QueueUnbindOk{},
	&BasicQos{}, &BasicQosOk{}, &BasicConsume{}, &BasicConsumeOk{}, &BasicCancel{}, &BasicCancelOk{},
	&BasicPublish{}, &BasicReturn{}, &BasicDeliver{}, &BasicGet{}, &BasicGetOk{}, &BasicGetEmpty{},
	&BasicAck{}, &BasicReject{}, &BasicRecoverAsync{}, &BasicRecover{}, &BasicRecoverOk{}, &BasicNack{},
	&TxSelect{}, &TxSelectOk{}, &TxCommit{}, &TxCommitOk{}, &TxRollback{}, &TxRollbackOk{},
	&ConfirmSelect{}, &ConfirmSelectOk{},
}

// allMethods returns a zero value of every known method, via NewMethod.
func allMethods() []Method {
	var ms []Method
	for c := 0; c < 256; c++ {
		for m := 0; m < 256; m++ {
			if x := NewMethod(uint16(c), uint16(m)); x != nil {
				ms = append(ms, x)
			}
		}
	}
	return ms
}

// fill sets every field of the struct m points to a non-zero value derived
// from seed.
func fill(m Method, seed int) {
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		n := seed + i + 1
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(n) * 0x0101010101010101 & (1<<(8*f.Type().Size()) - 1 | 0xFF))
		case reflect.String:
			f.SetString(v.Type().Field(i).Name + strings.Repeat("x", n%7))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{"k": "v", "n": int32(n), "nested": Table{"a": []any{int64(1), "b"}}}))
		default:
			panic("unhandled kind " + f.Kind().String())
		}
	}
}

func TestAllMethodsRegistered(t *testing.T) {
	all := allMethods()
	if len(all) != len(namedMethods) {
		t.Errorf("NewMethod knows %d methods, want %d", len(all), len(namedMethods))
	}
	for _, m := range namedMethods {
		got := NewMethod(m.ClassID(), m.MethodID())
		if reflect.TypeOf(got) != reflect.TypeOf(m) {
			t.Errorf("NewMethod(%d, %d) = %T, want %T", m.ClassID(), m.MethodID(), got, m)
		}
		if MethodNameOf(m.ClassID(), m.MethodID()) != m.MethodName() {
			t.Errorf("MethodNameOf(%d, %d) = %q, want %q", m.ClassID(), m.MethodID(), MethodNameOf(m.ClassID(), m.MethodID()), m.MethodName())
		}
	}
}

func TestMethodRoundTrip(t *testing.T) {
	for _, zero := range allMethods() {
		for seed, populate := range []bool{false, true} {
			m := NewMethod(zero.ClassID(), zero.MethodID())
			if populate {
				fill(m, seed)
			}
			t.Run(m.MethodName(), func(t *testing.T) {
				frame := AppendMethodFrame(nil, 7, m)
				fr := NewFrameReader(bytes.NewReader(frame), 0)
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if f.Type != FrameMethod || f.Channel != 7 {
					t.Fatalf("frame type %d channel %d", f.Type, f.Channel)
				}
				got, err := DecodeMethod(f.Payload)
				if err != nil {
					t.Fatalf("DecodeMethod: %v", err)
				}
				want := m
				if !populate {
					// Empty tables decode as nil; zero values are otherwise equal.
					want = NewMethod(m.ClassID(), m.MethodID())
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
				}
				// Every strict prefix of the arguments must fail to decode.
				args := f.Payload[4:]
				for i := 0; i < len(args); i++ {
					x := NewMethod(m.ClassID(), m.MethodID())
					err := x.DecodeArgs(args[:i])
					var de *DecodeError
					if !errors.As(err, &de) {
						t.Fatalf("DecodeArgs(%d of %d bytes) = %v, want *DecodeError", i, len(args), err)
					}
					if de.ClassID != m.ClassID() || de.MethodID != m.MethodID() {
						t.Errorf("DecodeError ids %d/%d", de.ClassID, de.MethodID)
					}
				}
				// Trailing bytes are an error too.
				if err := NewMethod(m.ClassID(), m.MethodID()).DecodeArgs(append(args[:len(args):len(args)], 0)); err == nil {
					t.Errorf("trailing byte accepted")
				}
			})
		}
	}
}

func TestMethodMetadata(t *testing.T) {
	tests := []struct {
		m        Method
		name     string
		class    uint16
		method   uint16
		content  bool
		sync     bool
		argBytes string
	}{
		{&BasicPublish{}, "basic.publish", 60, 40, true, false, ""},
		{&BasicReturn{}, "basic.return", 60, 50, true, false, ""},
		{&BasicDeliver{}, "basic.deliver", 60, 60, true, false, ""},
		{&BasicGetOk{}, "basic.get-ok", 60, 71, true, true, ""},
		{&BasicAck{}, "basic.ack", 60, 80, false, false, ""},
		{&ConnectionStartOk{}, "connection.start-ok", 10, 11, false, true, ""},
		{&ConnectionBlocked{}, "connection.blocked", 10, 60, false, false, ""},
		{&ConnectionUnblocked{}, "connection.unblocked", 10, 61, false, false, ""},
		{&ConnectionUpdateSecret{}, "connection.update-secret", 10, 70, false, true, ""},
		{&ConnectionUpdateSecretOk{}, "connection.update-secret-ok", 10, 71, false, true, ""},
		{&ExchangeUnbindOk{}, "exchange.unbind-ok", 40, 51, false, true, ""},
		{&ConfirmSelect{}, "confirm.select", 85, 10, false, true, ""},
		{&TxRollbackOk{}, "tx.rollback-ok", 90, 31, false, true, ""},
		{&ChannelFlowOk{}, "channel.flow-ok", 20, 21, false, false, ""},
	}
	for _, tt := range tests {
		if tt.m.MethodName() != tt.name || tt.m.ClassID() != tt.class || tt.m.MethodID() != tt.method ||
			tt.m.HasContent() != tt.content || tt.m.Synchronous() != tt.sync {
			t.Errorf("%T: got %q %d/%d content=%v sync=%v, want %q %d/%d content=%v sync=%v", tt.m,
				tt.m.MethodName(), tt.m.ClassID(), tt.m.MethodID(), tt.m.HasContent(), tt.m.Synchronous(),
				tt.name, tt.class, tt.method, tt.content, tt.sync)
		}
	}
	content := 0
	for _, m := range allMethods() {
		if m.HasContent() {
			content++
		}
	}
	if content != 4 {
		t.Errorf("%d methods have content, want 4", content)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKnownEncodings(t *testing.T) {
	tests := []struct {
		name    string
		channel uint16
		m       Method
		frame   string // hex, whitespace ignored
	}{
		{"connection.tune", 0, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
			"01 0000 0000000C 000A 001E 07FF 00020000 003C CE"},
		{"basic.publish", 1, &BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true},
			"01 0001 0000000D 003C 0028 0000 02 6578 02 726B 01 CE"},
		{"basic.publish immediate", 1, &BasicPublish{Immediate: true},
			"01 0001 00000009 003C 0028 0000 00 00 02 CE"},
		{"queue.declare durable+no-wait", 2, &QueueDeclare{Queue: "q", Durable: true, NoWait: true},
			"01 0002 0000000D 0032 000A 0000 01 71 12 00000000 CE"},
		{"queue.declare all bits", 2, &QueueDeclare{Passive: true, Durable: true, Exclusive: true, AutoDelete: true, NoWait: true},
			"01 0002 0000000C 0032 000A 0000 00 1F 00000000 CE"},
		{"basic.deliver", 3, &BasicDeliver{ConsumerTag: "c", DeliveryTag: 0x0102030405060708, Redelivered: true, Exchange: "", RoutingKey: "k"},
			"01 0003 00000012 003C 003C 01 63 0102030405060708 01 00 01 6B CE"},
		{"basic.ack multiple", 1, &BasicAck{DeliveryTag: 5, Multiple: true},
			"01 0001 0000000D 003C 0050 0000000000000005 01 CE"},
		{"basic.nack multiple requeue", 1, &BasicNack{DeliveryTag: 5, Multiple: true, Requeue: true},
			"01 0001 0000000D 003C 0078 0000000000000005 03 CE"},
		{"channel.close", 1, &ChannelClose{ReplyCode: 404, ReplyText: "NF", FailingClassID: 50, FailingMethodID: 10},
			"01 0001 0000000D 0014 0028 0194 02 4E46 0032 000A CE"},
		{"connection.blocked", 0, &ConnectionBlocked{Reason: "low"},
			"01 0000 00000008 000A 003C 03 6C6F77 CE"},
		{"connection.update-secret", 0, &ConnectionUpdateSecret{NewSecret: "s", Reason: "r"},
			"01 0000 0000000B 000A 0046 00000001 73 01 72 CE"},
		{"exchange.declare table", 1, &ExchangeDeclare{Exchange: "e", Type: "topic", Durable: true, Arguments: Table{"a": true}},
			"01 0001 00000017 0028 000A 0000 01 65 05 746F706963 02 00000004 01 61 74 01 CE"},
		{"tx.select", 1, &TxSelect{}, "01 0001 00000004 005A 000A CE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.frame)
			got := AppendMethodFrame([]byte{}, tt.channel, tt.m)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding\n got %x\nwant %x", got, want)
			}
			dec, err := DecodeMethod(want[7 : len(want)-1])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec, tt.m) {
				t.Errorf("decode: got %#v want %#v", dec, tt.m)
			}
		})
	}
}

func TestBitsIgnoreUnusedHighBits(t *testing.T) {
	// queue.declare with all 8 bits set: only the 5 defined bits matter.
	m, err := DecodeMethod(unhex(t, "0032 000A 0000 00 FF 00000000"))
	if err != nil {
		t.Fatal(err)
	}
	q := m.(*QueueDeclare)
	if !q.Passive || !q.Durable || !q.Exclusive || !q.AutoDelete || !q.NoWait {
		t.Errorf("bits not all set: %+v", q)
	}
}

func TestShortstrTruncation(t *testing.T) {
	long := strings.Repeat("a", 300)
	frame := AppendMethodFrame(nil, 1, &BasicConsumeOk{ConsumerTag: long})
	m, err := DecodeMethod(frame[7 : len(frame)-1])
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*BasicConsumeOk).ConsumerTag; got != long[:255] {
		t.Errorf("got %d bytes, want 255", len(got))
	}
}

func TestDecodeMethodErrors(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		unknown bool
	}{
		{"empty", "", false},
		{"short ids", "003C00", false},
		{"unknown class", "0063 000A", true},
		{"unknown method", "003C 0063", true},
		{"truncated shortstr", "003C 0028 0000 05 6578", false},
		{"truncated longlong", "003C 0050 00000000", false},
		{"missing bits", "003C 0050 0000000000000001", false},
		{"trailing", "005A 000A 00", false},
		{"bad table length", "0032 000A 0000 00 00 FFFFFFFF", false},
		{"bad table value", "0032 000A 0000 00 00 00000003 01 61 5A", false},
		{"table length beyond args", "0032 000A 0000 00 00 00000010 01 61 56", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMethod(unhex(t, tt.payload))
			if m != nil {
				t.Errorf("method %#v returned with error", m)
			}
			var ue *UnknownMethodError
			var de *DecodeError
			switch {
			case tt.unknown && !errors.As(err, &ue):
				t.Errorf("err = %v (%T), want *UnknownMethodError", err, err)
			case !tt.unknown && !errors.As(err, &de):
				t.Errorf("err = %v (%T), want *DecodeError", err, err)
			}
			if err != nil && err.Error() == "" {
				t.Error("empty error text")
			}
		})
	}
	_, err := DecodeMethod(unhex(t, "0063 0007"))
	if ue, ok := err.(*UnknownMethodError); !ok || ue.ClassID != 99 || ue.MethodID != 7 {
		t.Errorf("got %#v", err)
	}
	_, err = DecodeMethod(unhex(t, "003C 0028 0000 05 6578"))
	if got := err.Error(); !strings.Contains(got, "basic.publish") || !strings.Contains(got, "exchange") {
		t.Errorf("error text %q should name the method and field", got)
	}
}

func TestDecodeMethodDoesNotAlias(t *testing.T) {
	payload := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "ex", RoutingKey: "rk"})[7:]
	m, err := DecodeMethod(payload[:len(payload)-1])
	if err != nil {
		t.Fatal(err)
	}
	for i := range payload {
		payload[i] = 'Z'
	}
	if p := m.(*BasicPublish); p.Exchange != "ex" || p.RoutingKey != "rk" {
		t.Errorf("decoded strings alias the payload: %+v", p)
	}
}

func TestConstants(t *testing.T) {
	tests := []struct {
		got, want int
	}{
		{ReplySuccess, 200}, {ContentTooLarge, 311}, {NoRoute, 312}, {NoConsumers, 313},
		{ConnectionForced, 320}, {InvalidPath, 402}, {AccessRefused, 403}, {NotFound, 404},
		{ResourceLocked, 405}, {PreconditionFailed, 406}, {FrameErrorCode, 501}, {SyntaxError, 502},
		{CommandInvalid, 503}, {ChannelError, 504}, {UnexpectedFrame, 505}, {ResourceError, 506},
		{NotAllowed, 530}, {NotImplemented, 540}, {InternalError, 541},
		{FrameMinSize, 4096}, {FrameMethod, 1}, {FrameHeader, 2}, {FrameBody, 3}, {FrameHeartbeat, 8}, {FrameEnd, 0xCE},
		{ClassConnection, 10}, {ClassChannel, 20}, {ClassExchange, 40}, {ClassQueue, 50}, {ClassBasic, 60},
		{ClassConfirm, 85}, {ClassTx, 90},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("constant %d: got %d want %d", i, tt.got, tt.want)
		}
	}
	if ReplyCodeName(NotFound) != "NOT_FOUND" || ReplyCodeName(1) != "" {
		t.Error("ReplyCodeName")
	}
	if !IsHardError(FrameErrorCode) || IsHardError(NotFound) || IsHardError(ReplySuccess) {
		t.Error("IsHardError")
	}
	if ClassName(ClassBasic) != "basic" || ClassName(1) != "" {
		t.Error("ClassName")
	}
	if string(ProtocolHeader) != "AMQP\x00\x00\x09\x01" {
		t.Error("ProtocolHeader")
	}
}
