package broker

import (
	"strconv"
	"strings"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// heartbeatError is RabbitMQ's connection exception for a heartbeat frame
// it refuses, or nil for a good one: a payload is a frame error
// (unknown_frame, whatever the channel), and an empty heartbeat on a channel
// other than 0 an unexpected frame.
func heartbeatError(f amqp.Frame) *amqpError {
	switch {
	case len(f.Payload) > 0:
		return &amqpError{code: amqp.FrameErrorCode, hard: true,
			text: "FRAME_ERROR - " + frameSnippet(f) + ": unknown_frame"}
	case f.Channel != 0:
		return &amqpError{code: amqp.UnexpectedFrame, hard: true,
			text: "UNEXPECTED_FRAME - " + frameSnippet(f)}
	}
	return nil
}

// frameSnippet describes a frame as RabbitMQ's reader does in frame errors:
// "type ~p, ~s octets = ~p" with at most the first 16 payload octets.
func frameSnippet(f amqp.Frame) string {
	which, p := "all", f.Payload
	if len(p) > 16 {
		which, p = "first 16", p[:16]
	}
	prefix := "type " + strconv.Itoa(int(f.Type)) + ", " + which + " octets = "
	return prefix + erlangBinary(p, len(prefix))
}

// erlangLineLength is the line width of Erlang's ~p.
const erlangLineLength = 80

// erlangBinary renders b as Erlang's ~p does (latin1) when it starts at
// column col: <<"text">> if every byte is printable, else <<1,2,3>>,
// wrapped at 80 columns with continuation lines indented under the first
// element (checked against RabbitMQ 3.10's replies).
func erlangBinary(b []byte, col int) string {
	if len(b) == 0 {
		return "<<>>"
	}
	if s, ok := erlangString(b); ok {
		return "<<" + s + ">>"
	}
	// io_lib_pretty's list fill: an element joins the line while it and
	// its comma, and the next comma if another element follows, stay left
	// of the line's end (the closing ">>" may pass it).
	var sb strings.Builder
	sb.WriteString("<<")
	indent := col + 2
	first := strconv.Itoa(int(b[0]))
	sb.WriteString(first)
	at := indent + len(first)
	for i, c := range b[1:] {
		e := strconv.Itoa(int(c))
		after := 1 // the next comma
		if i == len(b)-2 {
			after = 0
		}
		if at+1+len(e)+after < erlangLineLength {
			sb.WriteString("," + e)
			at += 1 + len(e)
			continue
		}
		sb.WriteString(",\n" + strings.Repeat(" ", indent) + e)
		at = indent + len(e)
	}
	sb.WriteString(">>")
	return sb.String()
}

// erlangString quotes b as Erlang prints a printable latin1 string, or
// reports false if a byte is not printable.
func erlangString(b []byte) (string, bool) {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c >= 0x20 && c <= 0x7e || c >= 0xa0:
			sb.WriteByte(c)
		default:
			esc, ok := erlangEscapes[c]
			if !ok {
				return "", false
			}
			sb.WriteString(esc)
		}
	}
	sb.WriteByte('"')
	return sb.String(), true
}

// erlangEscapes are the control characters Erlang counts as printable,
// with how it writes them.
var erlangEscapes = map[byte]string{
	'\n': `\n`, '\r': `\r`, '\t': `\t`, '\v': `\v`, '\b': `\b`, '\f': `\f`, 0x1b: `\e`,
}
