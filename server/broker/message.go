package broker

import "github.com/amqp-go/amqp-go/shared/amqp"

// Message is one published message. It is immutable once routed and shared,
// by pointer, by every queue it reached: a message routed to N queues is
// stored once.
type Message struct {
	Exchange   string
	RoutingKey string
	// Props holds the content-header properties exactly as the publisher
	// sent them, so they are relayed byte for byte.
	Props []byte
	Body  []byte
	// Persistent is delivery_mode 2.
	Persistent bool

	// ref locates the message in the durable log, once appended.
	ref storeRef
	// priority is the priority property (0 if absent).
	priority uint8
	// ttl is the expiration property in ms, if hasTTL.
	ttl    int64
	hasTTL bool
}

// Properties decodes the message's properties. Routing that needs them
// (headers exchanges) pays for the decode; the hot path does not.
func (m *Message) Properties() (amqp.Properties, error) {
	var p amqp.Properties
	err := p.Decode(m.Props)
	return p, err
}

// propFlags returns the property presence flags without decoding.
func propFlags(raw []byte) uint16 {
	if len(raw) < 2 {
		return 0
	}
	return uint16(raw[0])<<8 | uint16(raw[1])
}
