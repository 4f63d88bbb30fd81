package broker

import (
	"errors"
	"fmt"

	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Badger keeps its memtable and value log in memory-mapped files created
// sparse, so a write into a page the full disk cannot back kills the
// process with SIGBUS instead of returning an error. The broker therefore
// never writes definitions without room to spare.
const (
	// minFreeToStart is the free space Open needs before opening Badger,
	// which may replay and rewrite its memtable at once: the memtable and
	// value-log files it can touch, twice over.
	minFreeToStart = 64 << 20
	// minFreeForDefinitions is the free space below which definition
	// writes are refused: far more than any one write, so that writes
	// racing the check still find pages.
	minFreeForDefinitions = 16 << 20
)

// errDefinitionsBlocked refuses a definitions write on a (nearly) full disk.
var errDefinitionsBlocked = errors.New("definitions store writes are suspended: disk space is low")

// checkStartSpace refuses to open the data directory on a disk too full to
// open Badger safely.
func checkStartSpace(dir string) error {
	free, err := monitor.DiskFree(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: measuring free space: %w", dir, err)
	}
	if free < minFreeToStart {
		return fmt.Errorf("data directory %s: only %d bytes of disk free, at least %d needed to open the definitions store safely; free some space and start again", dir, free, minFreeToStart)
	}
	return nil
}

// guardDefinitions is checked before every write to Badger that no client
// asked for (auto-delete, expiry, the delivered bound): it fails rather
// than risk the write.
func (s *Server) guardDefinitions() error {
	if why := s.definitionsBlocked(); why != "" {
		return fmt.Errorf("%w: %s", errDefinitionsBlocked, why)
	}
	return nil
}

// writeDefs runs a Badger write unless guardDefinitions refuses it.
func (s *Server) writeDefs(write func() error) error {
	if err := s.guardDefinitions(); err != nil {
		return err
	}
	if s.cfg.defsWriteHook != nil {
		if err := s.cfg.defsWriteHook(); err != nil {
			return err
		}
	}
	return write()
}

// refuseDurableChange answers a client's change to durable definitions
// with 506 RESOURCE_ERROR while they cannot be written, naming the alarm.
// what describes the change ("declare queue 'q'").
func (s *Server) refuseDurableChange(m amqp.Method, vhost, what string) error {
	if s.defs == nil {
		return nil
	}
	if why := s.definitionsBlocked(); why != "" {
		return resourceError(m, "cannot %s in vhost '%s': %s", what, vhost, why)
	}
	return nil
}

// resourceError is 506 RESOURCE_ERROR closing only the channel: the spec
// classes 506 as a connection error, but a refused definition change must
// not stop the connection's consumers draining.
func resourceError(m amqp.Method, format string, args ...any) *amqpError {
	e := protoErr(amqp.ResourceError, m, format, args...)
	e.hard = false
	return e
}

// durableChange refuses, while definitions cannot be written, a method
// that would change durable definitions: declaring a new durable exchange
// or queue, deleting one, or binding or unbinding two durable ends. Other
// methods, and changes to transient objects, go ahead.
func (ch *channel) durableChange(m amqp.Method) error {
	switch m.(type) {
	case *amqp.ExchangeDeclare, *amqp.ExchangeDelete, *amqp.ExchangeBind, *amqp.ExchangeUnbind,
		*amqp.QueueDeclare, *amqp.QueueBind, *amqp.QueueUnbind, *amqp.QueueDelete:
	default:
		return nil // publishes, acks and the rest: nothing to look up
	}
	c := ch.conn
	s, v := c.srv, c.vhost
	if s.defs == nil {
		return nil
	}
	durableX := func(name string) bool {
		x := v.exchange(name)
		return x != nil && x.Durable && name != ""
	}
	durableQ := func(name string) bool {
		if name == "" {
			name = ch.lastQueue
		}
		q := v.queue(name)
		return q != nil && q.id != 0
	}
	var what string
	switch m := m.(type) {
	case *amqp.ExchangeDeclare:
		if m.Durable && !m.Passive && v.exchange(m.Exchange) == nil {
			what = "declare exchange '" + m.Exchange + "'"
		}
	case *amqp.ExchangeDelete:
		if durableX(m.Exchange) {
			what = "delete exchange '" + m.Exchange + "'"
		}
	case *amqp.ExchangeBind:
		if durableX(m.Source) && durableX(m.Destination) {
			what = "bind exchange '" + m.Destination + "'"
		}
	case *amqp.ExchangeUnbind:
		if durableX(m.Source) && durableX(m.Destination) {
			what = "unbind exchange '" + m.Destination + "'"
		}
	case *amqp.QueueDeclare:
		if m.Durable && !m.Exclusive && !m.Passive && (m.Queue == "" || v.queue(m.Queue) == nil) {
			what = "declare queue '" + m.Queue + "'"
		}
	case *amqp.QueueBind:
		if durableQ(m.Queue) && durableX(m.Exchange) {
			what = "bind queue '" + m.Queue + "'"
		}
	case *amqp.QueueUnbind:
		if durableQ(m.Queue) && durableX(m.Exchange) {
			what = "unbind queue '" + m.Queue + "'"
		}
	case *amqp.QueueDelete:
		if durableQ(m.Queue) {
			what = "delete queue '" + m.Queue + "'"
		}
	}
	if what == "" {
		return nil
	}
	return s.refuseDurableChange(m, v.name, what)
}

// deliveredNotStored logs, at most once a second, that the delivered bound
// could not be raised (deliveries go on; only the redelivered flag after a
// crash may be wrong).
func (s *Server) deliveredNotStored(err error) {
	if n, ok := s.deliveredLog.allow(); ok {
		s.logger.Error("delivered bound not stored; redelivered flags after a crash may be wrong", "err", err, "suppressed", n)
	}
}
