package broker

import (
	"fmt"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// amqpError is a protocol exception. Hard errors close the connection; soft
// ones close only the channel. The reply text carries RabbitMQ's upper-case
// code name prefix, as clients and operators expect to read it.
type amqpError struct {
	code     uint16
	text     string
	classID  uint16
	methodID uint16
	hard     bool
}

func (e *amqpError) Error() string { return e.text }

// replyNames are the reply-code names RabbitMQ prefixes its reply texts with.
var replyNames = map[uint16]string{
	amqp.ContentTooLarge:    "CONTENT_TOO_LARGE",
	amqp.NoRoute:            "NO_ROUTE",
	amqp.NoConsumers:        "NO_CONSUMERS",
	amqp.ConnectionForced:   "CONNECTION_FORCED",
	amqp.InvalidPath:        "INVALID_PATH",
	amqp.AccessRefused:      "ACCESS_REFUSED",
	amqp.NotFound:           "NOT_FOUND",
	amqp.ResourceLocked:     "RESOURCE_LOCKED",
	amqp.PreconditionFailed: "PRECONDITION_FAILED",
	amqp.FrameErrorCode:     "FRAME_ERROR",
	amqp.SyntaxError:        "SYNTAX_ERROR",
	amqp.CommandInvalid:     "COMMAND_INVALID",
	amqp.ChannelError:       "CHANNEL_ERROR",
	amqp.UnexpectedFrame:    "UNEXPECTED_FRAME",
	amqp.ResourceError:      "RESOURCE_ERROR",
	amqp.NotAllowed:         "NOT_ALLOWED",
	amqp.NotImplemented:     "NOT_IMPLEMENTED",
	amqp.InternalError:      "INTERNAL_ERROR",
}

// hardCodes are the reply codes the spec classes as connection exceptions.
var hardCodes = map[uint16]bool{
	amqp.ConnectionForced: true, amqp.InvalidPath: true, amqp.FrameErrorCode: true,
	amqp.SyntaxError: true, amqp.CommandInvalid: true, amqp.ChannelError: true,
	amqp.UnexpectedFrame: true, amqp.ResourceError: true, amqp.NotAllowed: true,
	amqp.NotImplemented: true, amqp.InternalError: true,
}

// protoErr builds an exception whose severity follows the spec's classing of
// the code; m is the method that caused it, or nil.
func protoErr(code uint16, m amqp.Method, format string, args ...any) *amqpError {
	e := &amqpError{
		code: code,
		text: replyNames[code] + " - " + fmt.Sprintf(format, args...),
		hard: hardCodes[code],
	}
	if m != nil {
		e.classID, e.methodID = m.ClassID(), m.MethodID()
	}
	if len(e.text) > 255 {
		e.text = e.text[:252] + "..." // as RabbitMQ truncates
	}
	return e
}

func errNoQueue(m amqp.Method, vhost, name string) *amqpError {
	return protoErr(amqp.NotFound, m, "no queue '%s' in vhost '%s'", name, vhost)
}

func errNoExchange(m amqp.Method, vhost, name string) *amqpError {
	return protoErr(amqp.NotFound, m, "no exchange '%s' in vhost '%s'", name, vhost)
}
