package broker

import (
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Message is one published message. It is immutable once routed and shared,
// by pointer, by every queue it reached: a message routed to N queues is
// stored once. It is the store's message (exchange, routing key, the
// properties exactly as the publisher sent them, so they are relayed byte
// for byte, body, delivery mode and Meta with the priority) so that the
// store takes it as it is, plus what routing worked out.
type Message struct {
	store.Message

	// ref is where the store has the message (zero: only in memory).
	ref store.Ref
	// ttl is the expiration property in ms, if hasTTL.
	ttl    int64
	hasTTL bool
}

// decodeProperties decodes the message's properties. Routing that needs
// them (headers exchanges) pays for the decode; the hot path does not.
func (m *Message) decodeProperties() (amqp.Properties, error) {
	var p amqp.Properties
	err := p.Decode(m.Properties)
	return p, err
}

// propFlags returns the property presence flags without decoding.
func propFlags(raw []byte) uint16 {
	if len(raw) < 2 {
		return 0
	}
	return uint16(raw[0])<<8 | uint16(raw[1])
}
