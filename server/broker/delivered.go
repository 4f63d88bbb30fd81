package broker

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// deliveredMark makes the redelivered flag accurate after a crash without
// a write per delivery. It keeps one durable number, the delivered bound:
// no message whose log id is above it has ever been delivered. Recovery
// flags messages at or below it redelivered and the rest not.
//
// Deliveries raise it ahead of themselves: the bound is set to the highest
// id delivered plus headroom, twice what deliveries advanced in the last
// checkpoint interval (storage.offsetcheckpointinterval), at least
// minHeadroom. The checkpoint goroutine raises it every interval; a
// delivery that overtakes it raises it synchronously first (a store write),
// which at a steady rate is rare. A message below the bound that was never
// delivered comes back flagged redelivered, which AMQP allows ("may have
// been delivered"); a delivered one never comes back unflagged.
type deliveredMark struct {
	defs     *definitions
	interval time.Duration
	// guard, if set, is asked before each store write; an error skips it
	// (Server.guardDefinitions: no writes on a nearly full disk).
	guard func() error

	bound     atomic.Uint64 // durable: deliveries may go up to it
	delivered atomic.Uint64 // highest log id delivered so far
	mu        sync.Mutex    // serialises raises (store writes)
	lastSeen  uint64        // delivered at the previous checkpoint (mu)
	headroom  atomic.Uint64 // current headroom
	stop      chan struct{}
	done      chan struct{}
}

// minHeadroom bounds how often a slow trickle of deliveries writes.
const minHeadroom = 256

var deliveredKey = key("m", "delivered-bound")

// loadDelivered reads the persisted bound (0 if none).
func loadDelivered(defs *definitions) (uint64, error) {
	b, found, err := defs.kv.Get(deliveredKey)
	if err != nil || !found {
		return 0, err
	}
	if len(b) != 8 {
		return 0, errors.New("corrupt delivered bound")
	}
	return binary.BigEndian.Uint64(b), nil
}

func newDeliveredMark(defs *definitions, start uint64, interval time.Duration, guard func() error) *deliveredMark {
	d := &deliveredMark{defs: defs, interval: interval, guard: guard, stop: make(chan struct{}), done: make(chan struct{})}
	d.bound.Store(start)
	d.delivered.Store(start)
	d.lastSeen = start
	d.headroom.Store(minHeadroom)
	go d.run()
	return d
}

// run is the checkpoint goroutine: it adapts the headroom to the delivery
// rate and raises the bound ahead of it.
func (d *deliveredMark) run() {
	defer close(d.done)
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			cur := d.delivered.Load()
			d.mu.Lock()
			advance := cur - min(cur, d.lastSeen)
			d.lastSeen = cur
			d.mu.Unlock()
			h := max(2*advance, minHeadroom)
			d.headroom.Store(h)
			_ = d.raise(cur + h)
		}
	}
}

// raise persists a bound of at least to.
func (d *deliveredMark) raise(to uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if to <= d.bound.Load() {
		return nil
	}
	if d.guard != nil {
		if err := d.guard(); err != nil {
			return err
		}
	}
	v := binary.BigEndian.AppendUint64(nil, to)
	if err := d.defs.kv.Set(deliveredKey, v); err != nil {
		return err
	}
	d.bound.Store(to)
	return nil
}

// covered records a delivery of log id and makes sure the durable bound
// covers it first.
func (d *deliveredMark) covered(id uint64) error {
	for {
		cur := d.delivered.Load()
		if id <= cur || d.delivered.CompareAndSwap(cur, id) {
			break
		}
	}
	if id <= d.bound.Load() {
		return nil
	}
	return d.raise(id + d.headroom.Load())
}

func (d *deliveredMark) close() {
	close(d.stop)
	<-d.done
}
