package bench

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// topology is what a run declares and how producers and consumers map onto
// it, following PerfTest:
//
//   - no --queue, no --queue-pattern: every consumer declares its own
//     server-named queue bound to the exchange with the routing key, so every
//     message reaches every consumer;
//   - --queue NAME: one queue bound with the routing key, shared by all
//     consumers (competing consumers);
//   - --queue-pattern P --queue-pattern-from A --queue-pattern-to B: queues
//     P%A..P%B, each bound with its own name as routing key; producer i
//     publishes with routing key queue[i mod n] and consumer i consumes from
//     queue[i mod n].
//
// Queues are durable when -f persistent is given (PerfTest does the same),
// auto-delete unless --auto-delete false, exclusive with --exclusive.
type topology struct {
	named          []string // queues declared up front (pattern or --queue)
	producerKeys   []string // routing key per producer
	consumerQueues []string // queue per consumer; "" = server-named
	bindKey        map[string]string
	pattern        bool
}

func planTopology(c *Config) (*topology, error) {
	t := &topology{bindKey: map[string]string{}}
	t.producerKeys = make([]string, c.Producers)
	t.consumerQueues = make([]string, c.Consumers)
	switch {
	case c.QueuePattern != "":
		t.pattern = true
		for i := c.QueuePatternFrom; i <= c.QueuePatternTo; i++ {
			q := fmt.Sprintf(c.QueuePattern, i)
			t.named = append(t.named, q)
			t.bindKey[q] = q
		}
		for i := range t.producerKeys {
			t.producerKeys[i] = t.named[i%len(t.named)]
		}
		for i := range t.consumerQueues {
			t.consumerQueues[i] = t.named[i%len(t.named)]
		}
	case c.Queue != "":
		t.named = []string{c.Queue}
		t.bindKey[c.Queue] = c.RoutingKey
		for i := range t.producerKeys {
			t.producerKeys[i] = c.RoutingKey
		}
		for i := range t.consumerQueues {
			t.consumerQueues[i] = c.Queue
		}
	default:
		if c.Predeclared && c.Consumers > 0 {
			return nil, usageErr("--predeclared with consumers needs --queue or --queue-pattern")
		}
		for i := range t.producerKeys {
			t.producerKeys[i] = c.RoutingKey
		}
	}
	if c.Exclusive && len(t.named) > 0 && !c.Predeclared {
		return nil, usageErr("--exclusive is only supported with server-named queues (no --queue/--queue-pattern)")
	}
	return t, nil
}

func isDefaultExchange(name string) bool { return name == "" || name == "amq.default" }

// routes reports whether a message of producer p reaches queue q, assuming
// the topology perftest declared. It drives the loss check.
func (t *topology) routes(c *Config, p int, q string, serverNamed bool) bool {
	if isDefaultExchange(c.Exchange) {
		return t.producerKeys[p] == q
	}
	if c.ExchangeType == "fanout" {
		return true
	}
	if serverNamed {
		return t.producerKeys[p] == c.RoutingKey
	}
	return t.producerKeys[p] == t.bindKey[q]
}

// isNotFound reports whether err is an AMQP 404 NOT_FOUND channel error.
func isNotFound(err error) bool {
	var e *amqp.Error
	return errors.As(err, &e) && e.Code == amqp.NotFound
}
