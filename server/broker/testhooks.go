package broker

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sync/atomic"
)

// This file holds the few hooks that tests outside the package need to
// drive a server without sockets and to check, between inputs, that it is
// back to the state of a new one: FuzzConn (package
// server/broker/fuzzconn), which lives apart from the broker's other tests
// so that its binary links neither Badger nor their dependencies, whose
// coverage counters made every fuzzing execution slower. They are not for
// production use.

// UseListener makes Serve accept connections from l, instead of the
// listeners Listen opens; call it before Serve, in place of Listen.
func (s *Server) UseListener(l net.Listener) { s.ln = l }

// SetBeforeLocalChange makes f run each time a binding that the cluster
// does not carry is about to be made or removed on this node alone,
// before the vhost's definitions lock is taken: a test widens there the
// window in which the cluster's log may make its ends replicated ones.
// nil removes it.
func (s *Server) SetBeforeLocalChange(f func()) { s.localChangeHook.set(f) }

// SetBeforePush makes f run in every publish between the message's store
// put and its pushes into the queues: a test widens there the window in
// which the store may answer first. nil removes it.
func (s *Server) SetBeforePush(f func()) { s.pushHook.set(f) }

// SetBeforeConfirms makes f run in every connection's writer round between
// taking the output buffer and adding the channels' confirms to it (with
// the output lock held): a test widens there the window in which a
// reader appends frames for the next round. nil removes it.
func (s *Server) SetBeforeConfirms(f func()) { s.confirmsHook.set(f) }

// testHook is a func a test sets (SetBefore...), run where the server
// calls it; unset, it costs an atomic load.
type testHook struct{ f atomic.Pointer[func()] }

func (h *testHook) set(f func()) {
	if f == nil {
		h.f.Store(nil)
		return
	}
	h.f.Store(&f)
}

func (h *testHook) run() {
	if f := h.f.Load(); f != nil {
		(*f)()
	}
}

// WaitConnections waits until the server has let go of every connection
// it accepted (the goroutines Close waits for); no connection may be
// accepted meanwhile.
func (s *Server) WaitConnections() { s.wg.Wait() }

// WaitQueues waits until every deleted queue's goroutine has ended.
func (s *Server) WaitQueues() { s.queues.Wait() }

// ConnectionsLeft reports what the server still holds of connections when
// no client is connected, which is a leak: connections, channels,
// handshakes in progress, direct reply-to consumers. It returns nil when
// there is none.
func (s *Server) ConnectionsLeft() error {
	if st := s.Stats(); st.Connections != 0 || st.Channels != 0 {
		return fmt.Errorf("with every client gone, the server counts %d connections and %d channels", st.Connections, st.Channels)
	}
	if n := s.handshakes.Load(); n != 0 {
		return fmt.Errorf("with every client gone, the server counts %d handshakes", n)
	}
	s.replies.mu.Lock()
	replies := len(s.replies.chans)
	s.replies.mu.Unlock()
	if replies != 0 {
		return fmt.Errorf("with every client gone, %d direct reply-to consumers are registered", replies)
	}
	return nil
}

// DeleteAll deletes every queue and exchange of every vhost and the
// bindings between the built-in exchanges, the only ones these deletions
// leave, and then checks that nothing is left: an error names a queue, an
// exchange or a binding that survived, or a destination index entry for a
// binding that has gone. Call it with no client connected.
func (s *Server) DeleteAll() error {
	s.mu.Lock()
	vhosts := slices.Collect(maps.Values(s.vhosts))
	s.mu.Unlock()
	for _, v := range vhosts {
		v.mu.RLock()
		qs := slices.Collect(maps.Values(v.queues))
		xs := slices.Collect(maps.Values(v.exchanges))
		v.mu.RUnlock()
		for _, q := range qs {
			if _, err := v.deleteQueue(q, nil); err != nil {
				return fmt.Errorf("deleting queue %q: %w", q.Name, err)
			}
		}
		for _, x := range xs {
			if x.Name != "" && !reservedName(x.Name) {
				// An auto-delete exchange may have gone with its last
				// binding already: an error is not a failure here, what
				// survives is, below.
				_, _ = v.Apply(DefChange{Kind: ExchangeDelete, Exchange: x.Name})
				continue
			}
			x.mu.RLock()
			bs := slices.Collect(maps.Values(x.bindings))
			x.mu.RUnlock()
			for _, b := range bs {
				x.unbind(b)
			}
		}
		if err := v.emptyErr(); err != nil {
			return err
		}
	}
	return nil
}

// emptyErr reports whether v holds anything but its six built-in
// exchanges ("", amq.direct, amq.fanout, amq.topic, amq.headers,
// amq.match), unbound.
func (v *VHost) emptyErr() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if len(v.queues) != 0 || len(v.exchanges) != 6 {
		return fmt.Errorf("vhost %q holds %d queues and %d exchanges once all were deleted", v.name, len(v.queues), len(v.exchanges))
	}
	for _, x := range v.exchanges {
		if n := x.bindingCount(); n != 0 {
			return fmt.Errorf("exchange %q of vhost %q has %d bindings once all were deleted", x.Name, v.name, n)
		}
	}
	v.dests.mu.Lock()
	dests := len(v.dests.m)
	v.dests.mu.Unlock()
	if dests != 0 {
		return fmt.Errorf("vhost %q indexes bindings into %d destinations once all were deleted", v.name, dests)
	}
	return nil
}
