package amqp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func fullProperties() Properties {
	return Properties{
		Flags: FlagContentType | FlagContentEncoding | FlagHeaders | FlagDeliveryMode | FlagPriority |
			FlagCorrelationID | FlagReplyTo | FlagExpiration | FlagMessageID | FlagTimestamp | FlagType |
			FlagUserID | FlagAppID | FlagClusterID,
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		Headers:         Table{"x-death": []any{Table{"count": int64(1), "queue": "q"}}, "n": int32(1)},
		DeliveryMode:    2,
		Priority:        9,
		CorrelationID:   "corr",
		ReplyTo:         "amq.rabbitmq.reply-to",
		Expiration:      "60000",
		MessageID:       "msg-1",
		Timestamp:       1700000000,
		Type:            "order.created",
		UserID:          "guest",
		AppID:           "perftest",
		ClusterID:       "c1",
	}
}

func TestPropertiesRoundTripAll(t *testing.T) {
	p := fullProperties()
	raw := p.Append(nil)
	if raw[0] != 0xFF || raw[1] != 0xFC {
		t.Errorf("flags %x, want fffc", raw[:2])
	}
	var q Properties
	if err := q.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Errorf("round trip:\n got %#v\nwant %#v", q, p)
	}
	if got := PeekDeliveryMode(raw); got != 2 {
		t.Errorf("PeekDeliveryMode = %d", got)
	}
	if err := validateProperties(raw); err != nil {
		t.Error(err)
	}
}

// TestPropertiesEachFlag encodes each property alone and all subsets of
// neighbouring pairs, checking the flags survive and only that field is set.
func TestPropertiesEachFlag(t *testing.T) {
	full := fullProperties()
	for bit := 15; bit >= 2; bit-- {
		for _, extra := range []uint16{0, 1 << (bit - 1)} {
			flags := uint16(1)<<bit | extra&^3
			p := full
			p.Flags = flags
			raw := p.Append(nil)
			var q Properties
			if err := q.Decode(raw); err != nil {
				t.Fatalf("flags %04x: %v", flags, err)
			}
			if q.Flags != flags {
				t.Errorf("flags %04x decoded as %04x", flags, q.Flags)
			}
			if again := q.Append(nil); !bytes.Equal(again, raw) {
				t.Errorf("flags %04x: re-encoding differs", flags)
			}
			wantDM := uint8(0)
			if flags&FlagDeliveryMode != 0 {
				wantDM = 2
			}
			if q.DeliveryMode != wantDM || PeekDeliveryMode(raw) != wantDM {
				t.Errorf("flags %04x: delivery mode %d, peek %d, want %d", flags, q.DeliveryMode, PeekDeliveryMode(raw), wantDM)
			}
		}
	}
}

func TestPropertiesKnownBytes(t *testing.T) {
	p := Properties{Flags: FlagContentType | FlagDeliveryMode | FlagTimestamp, ContentType: "t", DeliveryMode: 1, Timestamp: 2}
	want := unhex(t, "9040 01 74 01 0000000000000002")
	if got := p.Append(nil); !bytes.Equal(got, want) {
		t.Errorf("got %x want %x", got, want)
	}
	// Fields whose flag is clear are not written, whatever their value.
	p.MessageID = "ignored"
	if got := p.Append(nil); !bytes.Equal(got, want) {
		t.Errorf("unflagged field written: %x", got)
	}
	// Set flag, nil headers: empty table.
	h := Properties{Flags: FlagHeaders}
	if got := h.Append(nil); !bytes.Equal(got, unhex(t, "2000 00000000")) {
		t.Errorf("nil headers: %x", got)
	}
}

func TestPropertiesContinuation(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		ok   bool
		dm   uint8
	}{
		{"zero continuation word", "1001 0000 02", true, 2},
		{"chained zero words", "1001 0001 0000 02", true, 2},
		{"non-zero continuation word", "1001 8000 02", false, 0},
		{"missing continuation word", "1001", false, 0},
		{"no properties", "0000", true, 0},
		{"empty", "", false, 0},
		{"one byte", "10", false, 0},
		{"truncated delivery mode", "1000", false, 0},
		{"trailing byte", "1000 02 00", false, 0},
		{"truncated content type", "8000 05 6161", false, 0},
		{"truncated headers", "2000 00000010 00", false, 0},
		{"broken headers", "3000 00000003 0161 5A 02", false, 0},
		{"unused bit 1 kept", "1002 02", true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := unhex(t, tt.raw)
			var p Properties
			err := p.Decode(raw)
			if tt.ok != (err == nil) {
				t.Fatalf("Decode err = %v, want ok=%v", err, tt.ok)
			}
			if verr := validateProperties(raw); (verr == nil) != (err == nil) {
				t.Errorf("validateProperties = %v, Decode = %v", verr, err)
			}
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) || de.ClassID != ClassBasic {
					t.Errorf("err %#v, want *DecodeError for class 60", err)
				}
				return
			}
			if p.Flags&1 != 0 {
				t.Errorf("continuation bit kept in Flags %04x", p.Flags)
			}
			if p.DeliveryMode != tt.dm || PeekDeliveryMode(raw) != tt.dm {
				t.Errorf("delivery mode %d, peek %d, want %d", p.DeliveryMode, PeekDeliveryMode(raw), tt.dm)
			}
			// Re-encoding drops the zero continuation words but keeps the rest.
			var q Properties
			if err := q.Decode(p.Append(nil)); err != nil || !reflect.DeepEqual(p, q) {
				t.Errorf("re-decode %#v %v", q, err)
			}
		})
	}
}

func TestPeekDeliveryModeSkipsHeaders(t *testing.T) {
	p := Properties{Flags: FlagContentType | FlagContentEncoding | FlagHeaders | FlagDeliveryMode,
		ContentType: "a", ContentEncoding: "bb", Headers: Table{"big": string(make([]byte, 1000))}, DeliveryMode: 1}
	raw := p.Append(nil)
	if got := PeekDeliveryMode(raw); got != 1 {
		t.Errorf("got %d", got)
	}
	for i := 0; i < len(raw); i++ { // truncated: never panics, 0
		if got := PeekDeliveryMode(raw[:i]); got != 0 {
			t.Errorf("prefix %d: got %d", i, got)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { PeekDeliveryMode(raw) }); allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}

func TestParseContentHeaderDoesNotAllocate(t *testing.T) {
	p := fullProperties()
	payload := AppendHeaderFrame(nil, 1, ClassBasic, 42, p.Append(nil))
	payload = payload[7 : len(payload)-1]
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseContentHeader(payload); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}
