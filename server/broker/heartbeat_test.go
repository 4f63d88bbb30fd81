package broker_test

import (
	"bytes"
	"testing"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// TestHeartbeatFrameErrors: a heartbeat with a payload is RabbitMQ's 501
// frame error (on any channel), an empty one on a channel other than 0 its
// 505 unexpected frame; the texts quote the payload as Erlang prints it
// (at most 16 octets, wrapped at 80 columns).
func TestHeartbeatFrameErrors(t *testing.T) {
	u := brokerURL(t)
	rep := bytes.Repeat
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	cases := []struct {
		name    string
		open    bool // open channel 1 first
		ch      uint16
		payload []byte
		code    uint16
		text    string
	}{
		{"empty on an open channel", true, 1, nil, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>"},
		{"empty on a closed channel", false, 2, nil, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>"},
		{"payload on channel 0", false, 0, []byte("abc"), 501, `FRAME_ERROR - type 8, all octets = <<"abc">>: unknown_frame`},
		{"payload on an open channel", true, 1, []byte("z"), 501, `FRAME_ERROR - type 8, all octets = <<"z">>: unknown_frame`},
		{"payload on a closed channel", false, 3, []byte("abc"), 501, `FRAME_ERROR - type 8, all octets = <<"abc">>: unknown_frame`},
		{"zero octet", false, 0, []byte{0}, 501, "FRAME_ERROR - type 8, all octets = <<0>>: unknown_frame"},
		{"long payload", false, 0, []byte("abcdefghijklmnopq"), 501, `FRAME_ERROR - type 8, first 16 octets = <<"abcdefghijklmnop">>: unknown_frame`},
		{"escapes", false, 0, []byte("a\nb\tc\rd\"e\\f\x1b\b\v\f"), 501, `FRAME_ERROR - type 8, all octets = <<"a\nb\tc\rd\"e\\f\e\b\v\f">>: unknown_frame`},
		{"latin1", false, 0, []byte{'a', 0xe9, 0xff}, 501, "FRAME_ERROR - type 8, all octets = <<\"a\xe9\xff\">>: unknown_frame"},
		{"not printable", false, 0, []byte("\x00ab"), 501, "FRAME_ERROR - type 8, all octets = <<0,97,98>>: unknown_frame"},
		{"delete", false, 0, []byte{'a', 0x7f}, 501, "FRAME_ERROR - type 8, all octets = <<97,127>>: unknown_frame"},
		{"C1 controls", false, 0, []byte{'a', 0x80, 0x9f, 0xa0}, 501, "FRAME_ERROR - type 8, all octets = <<97,128,159,160>>: unknown_frame"},
		{"81 columns, one line", false, 0, cat(rep([]byte{128}, 9), rep([]byte{16}, 7)), 501,
			"FRAME_ERROR - type 8, all octets = <<128,128,128,128,128,128,128,128,128,16,16,16,16,16,16,16>>: unknown_frame"},
		{"wrapped", false, 0, rep([]byte{128}, 16), 501,
			"FRAME_ERROR - type 8, all octets = <<128,128,128,128,128,128,128,128,128,128,128,128,128,128,\n" +
				"                       128,128>>: unknown_frame"},
		{"wrapped, last alone", false, 0, cat(rep([]byte{128}, 6), rep([]byte{16}, 11)), 501,
			"FRAME_ERROR - type 8, first 16 octets = <<128,128,128,128,128,128,16,16,16,16,16,16,16,16,16,\n" +
				"                            16>>: unknown_frame"},
		{"wrapped, first 16", false, 0, cat(rep([]byte{128}, 8), rep([]byte{16}, 9)), 501,
			"FRAME_ERROR - type 8, first 16 octets = <<128,128,128,128,128,128,128,128,16,16,16,16,16,16,\n" +
				"                            16,16>>: unknown_frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := rawHandshake(t, u, rawOpts{})
			if tc.open {
				r.openChannel(1)
			}
			r.write(hostileFrame(wire.FrameHeartbeat, tc.ch, tc.payload, wire.FrameEnd))
			r.expectConnClose(tc.code, tc.text)
		})
	}
}
