// Package amqp is the AMQP 0-9-1 wire codec of AMQP-Go Server: frames, method
// arguments, content headers, basic properties and field tables, compatible
// with RabbitMQ's protocol extensions.
//
// The method structs (ConnectionStart, BasicPublish, ...), the reply-code,
// frame and class constants and NewMethod are generated from the spec XML in
// spec/ by internal/gen (see generate.go); everything else is hand-written.
//
// Encoding functions follow the append style (AppendX(dst, ...) []byte) and
// do not allocate when dst has enough capacity. Decoding functions never
// panic on malformed input; they return *FrameError for frame-level
// violations and *DecodeError for malformed method arguments, content headers
// and field tables.
package amqp

import (
	"encoding/binary"
	"fmt"
)

// ProtocolHeader is the protocol header a client sends first on a connection:
// "AMQP" 0 0 9 1.
var ProtocolHeader = []byte("AMQP\x00\x00\x09\x01")

// Method is one decoded AMQP method.
type Method interface {
	// ClassID returns the method's class ID (e.g. 60 for basic).
	ClassID() uint16
	// MethodID returns the method's ID within its class.
	MethodID() uint16
	// MethodName returns the spec name, e.g. "basic.publish" or
	// "connection.start-ok".
	MethodName() string
	// HasContent reports whether the method carries content (a content
	// header and body frames follow): basic.publish, basic.return,
	// basic.deliver and basic.get-ok.
	HasContent() bool
	// Synchronous reports whether the spec marks the method synchronous.
	Synchronous() bool
	// AppendArgs appends the encoded arguments (without class and method
	// IDs) to dst. Consecutive bit arguments are packed into octets.
	// Short strings longer than 255 bytes are truncated to 255 bytes.
	AppendArgs(dst []byte) []byte
	// DecodeArgs decodes the arguments from b, which must hold exactly the
	// encoded arguments: short input and trailing bytes are errors. Errors
	// are of type *DecodeError.
	DecodeArgs(b []byte) error
}

// DecodeMethod decodes a method frame's payload (class ID, method ID and
// arguments). An unknown class or method yields *UnknownMethodError;
// malformed arguments yield *DecodeError. Strings and tables in the result
// do not alias payload.
func DecodeMethod(payload []byte) (Method, error) {
	if len(payload) < 4 {
		return nil, &DecodeError{Reason: fmt.Sprintf("method frame payload of %d octets is shorter than the 4-octet class and method IDs", len(payload))}
	}
	classID := binary.BigEndian.Uint16(payload)
	methodID := binary.BigEndian.Uint16(payload[2:])
	m := NewMethod(classID, methodID)
	if m == nil {
		return nil, &UnknownMethodError{ClassID: classID, MethodID: methodID}
	}
	if err := m.DecodeArgs(payload[4:]); err != nil {
		return nil, err
	}
	return m, nil
}

// FrameError is a frame-level protocol violation (bad frame-end octet, frame
// larger than frame_max, unknown frame type). The connection must be closed
// with Code and Text in connection.close.
type FrameError struct {
	// Code is the reply code, FrameErrorCode (501).
	Code uint16
	// Text is a human-readable reply text in RabbitMQ's style, prefixed
	// with the upper-case reply name, e.g.
	// "FRAME_ERROR - frame size 200008 > frame_max 131072".
	Text string
}

// Error returns e.Text.
func (e *FrameError) Error() string { return e.Text }

// DecodeError reports malformed method arguments, a malformed content header
// or a malformed field table.
type DecodeError struct {
	// ClassID and MethodID identify the method whose arguments were being
	// decoded. For content headers, ClassID is the header's class and
	// MethodID is 0. Both are 0 when they were not known.
	ClassID, MethodID uint16
	// Reason says what was wrong.
	Reason string
}

// Error describes the error, naming the method when it is known.
func (e *DecodeError) Error() string {
	if name := MethodNameOf(e.ClassID, e.MethodID); name != "" {
		return "amqp: malformed " + name + ": " + e.Reason
	}
	if e.ClassID != 0 && e.MethodID == 0 {
		return fmt.Sprintf("amqp: malformed content header (class %d): %s", e.ClassID, e.Reason)
	}
	if e.ClassID != 0 || e.MethodID != 0 {
		return fmt.Sprintf("amqp: malformed method %d/%d: %s", e.ClassID, e.MethodID, e.Reason)
	}
	return "amqp: malformed frame payload: " + e.Reason
}

// UnknownMethodError reports a method frame whose class and method IDs name
// no known method.
type UnknownMethodError struct {
	ClassID, MethodID uint16
}

// Error describes the error.
func (e *UnknownMethodError) Error() string {
	return fmt.Sprintf("amqp: unknown method: class %d, method %d", e.ClassID, e.MethodID)
}
