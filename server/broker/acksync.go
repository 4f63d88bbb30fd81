package broker

import (
	"errors"
	"slices"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Acks are durable before the reply to any later synchronous method on
// their channel, and before connection.close-ok. An ack, a reject or a
// nack without requeue on a durable queue releases the message in the store
// at once, on the reader goroutine (queue.Classic.Settle carries out its
// Release effect before returning, and the file store appends the ack
// record then), but nobody waits for the record's fsync. So before
// answering a synchronous method the reader asks the store for a barrier
// (store.Store.Sync), which is ordered after every record appended so far,
// and waits for it. Only a channel that settled on a durable queue since
// its last barrier waits (channel.unsynced), and only for messages the
// store holds: a publisher's, an idle channel's or a transient consumer's
// methods cost nothing, and a consumer pays one wait per round
// trip, never per message (the barrier rides on the fsync of the batch
// that holds the acks, shared with every other writer of the log).

// settledDurable notes, for the next barrier, that the reader settled
// entries other than by requeueing them, if one of them was in the store
// (a persistent message on a durable queue: only those have a Ref) or in
// a replicated quorum queue (whose settlements go through its group's
// log: the barrier waits for them there, queue.Quorum.Barrier).
//
// A classic queue homed on another node settles there, over the node
// link: the barrier asks the home node for its store's barrier, on the
// same connection the settlements went over (the link's generation, gen),
// and fails if that connection is gone (what it carried may be lost).
func (ch *channel) settledDurable(es []unackedEntry) {
	for i := range es {
		if q := es[i].q; q.quorum != nil || q.remote != nil {
			if !slices.ContainsFunc(ch.replicaUnsynced, func(u unsyncedQueue) bool { return u.q == q }) {
				u := unsyncedQueue{q: q, rq: q.remoteNow()}
				if u.rq != nil {
					u.gen = u.rq.current().generation()
				}
				ch.replicaUnsynced = append(ch.replicaUnsynced, u)
			}
			ch.unsynced = true
		} else if !ch.storeUnsynced && !es[i].e.ref.IsZero() {
			ch.storeUnsynced, ch.unsynced = true, true
		}
	}
}

// answers reports whether the server replies to m: only then must the
// acks before it be durable first.
func answers(m amqp.Method) bool {
	switch m := m.(type) {
	case *amqp.ChannelClose, *amqp.ChannelFlow, *amqp.QueueUnbind,
		*amqp.BasicQos, *amqp.BasicGet, *amqp.BasicRecover,
		*amqp.TxSelect, *amqp.TxCommit, *amqp.TxRollback:
		return true
	case *amqp.ExchangeDeclare:
		return !m.NoWait
	case *amqp.ExchangeDelete:
		return !m.NoWait
	case *amqp.ExchangeBind:
		return !m.NoWait
	case *amqp.ExchangeUnbind:
		return !m.NoWait
	case *amqp.QueueDeclare:
		return !m.NoWait
	case *amqp.QueueBind:
		return !m.NoWait
	case *amqp.QueuePurge:
		return !m.NoWait
	case *amqp.QueueDelete:
		return !m.NoWait
	case *amqp.BasicConsume:
		return !m.NoWait
	case *amqp.BasicCancel:
		return !m.NoWait
	case *amqp.ConfirmSelect:
		return !m.Nowait
	}
	return false // publishes, acks, recover-async, flow-ok, close-ok
}

// syncSettled makes what the channel settled since its last barrier
// (ch.unsynced, which the caller checked) durable before the reader
// handles m, a method the server answers. Reader goroutine, holding no
// lock.
func (ch *channel) syncSettled(m amqp.Method) error {
	store, quorum := ch.takeUnsynced()
	if err := ch.conn.srv.syncSettled(store, quorum); err != nil {
		return ackSyncFailed(m, err)
	}
	return nil
}

// unsyncedQueue is a replicated queue settled on since the last barrier:
// through rq (a remote queue, or a quorum queue forwarded from outside
// its group) on the node link's connection gen, or else through q's own
// group.
type unsyncedQueue struct {
	q   *Queue
	rq  *remoteQueue
	gen uint64
}

// takeUnsynced returns and clears what the next barrier must wait for.
func (ch *channel) takeUnsynced() (store bool, replicas []unsyncedQueue) {
	store, replicas = ch.storeUnsynced, ch.replicaUnsynced
	ch.unsynced, ch.storeUnsynced, ch.replicaUnsynced = false, false, nil
	return store, replicas
}

// syncSettled is the connection's barrier before connection.close-ok: one
// for all its channels, since they share the store. Reader goroutine.
func (c *conn) syncSettled(m amqp.Method) *amqpError {
	store := false
	var quorum []unsyncedQueue
	for _, ch := range c.channels {
		s, qs := ch.takeUnsynced()
		store = store || s
		for _, u := range qs {
			i := slices.IndexFunc(quorum, func(o unsyncedQueue) bool { return o.q == u.q })
			switch {
			case i < 0:
				quorum = append(quorum, u)
			case u.gen < quorum[i].gen:
				quorum[i].gen = u.gen // the older one's connection must still be up
			}
		}
	}
	if err := c.srv.syncSettled(store, quorum); err != nil {
		return ackSyncFailed(m, err)
	}
	return nil
}

// syncSettled waits for the store's barrier, if store, and for each
// replicated queue's (a quorum queue's group's, a remote queue's home
// node's).
func (s *Server) syncSettled(store bool, replicas []unsyncedQueue) error {
	if store {
		if err := s.syncStore(); err != nil {
			return err
		}
	}
	for _, u := range replicas {
		if u.rq != nil {
			if err := u.rq.barrier(u.gen); err != nil {
				return err
			}
			continue
		}
		if err := u.q.quorum.Barrier(); err != nil && !errors.Is(err, queue.ErrQueueClosed) {
			return err
		}
	}
	return nil
}

// ackSyncFailed answers a method whose earlier acks the store could not
// make durable: the log has failed (its alarm is raised, as for a failed
// publish) or closed, so the connection ends with 541 rather than let the
// client believe its acks.
func ackSyncFailed(m amqp.Method, err error) *amqpError {
	return protoErr(amqp.InternalError, m, "the message store could not make earlier acks durable: %v", err)
}

// syncStore waits until everything the store was given before the call is
// durable (store.Store.Sync). The store's callback only hands the result
// over, so the wait is one fsync of the log, or its failure. Called by
// readers holding no lock: the store's goroutine never waits for them.
func (s *Server) syncStore() error {
	done := make(chan error, 1)
	s.store.Sync(func(err error) { done <- err })
	return <-done
}
