package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// heartbeats sends every connection's heartbeats from one timer instead
// of a ticker per connection: an idle broker with thousands of
// connections then wakes once for all the heartbeats due at about the
// same time, not once per connection. The timer is armed only while a
// connection with heartbeats is open. Each round kicks the writers of the
// connections whose next heartbeat is due within their slack (an eighth of
// the interval, at most a second), which then send one if they wrote
// nothing since the last.
type heartbeats struct {
	mu    sync.Mutex // leaf: kicking a writer takes no lock
	conns []*conn
	timer *time.Timer
	at    time.Time // when timer fires (zero: not armed)
}

// hbState is a connection's part of the heartbeat rounds (guarded by
// heartbeats.mu, except due).
type hbState struct {
	idx  int       // in heartbeats.conns
	next time.Time // when the next heartbeat is due
	due  atomic.Bool
}

func hbSlack(c *conn) time.Duration { return min(c.heartbeat/8, time.Second) }

// add schedules c's heartbeats (c.heartbeat > 0): every half interval.
func (h *heartbeats) add(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c.hb.idx = len(h.conns)
	c.hb.next = time.Now().Add(c.heartbeat / 2)
	h.conns = append(h.conns, c)
	h.armLocked(c.hb.next)
}

// remove stops c's heartbeats.
func (h *heartbeats) remove(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := c.hb.idx
	if i >= len(h.conns) || h.conns[i] != c {
		return
	}
	last := len(h.conns) - 1
	h.conns[i] = h.conns[last]
	h.conns[i].hb.idx = i
	h.conns[last] = nil
	h.conns = h.conns[:last]
	if len(h.conns) == 0 && h.timer != nil {
		h.timer.Stop()
		h.at = time.Time{}
	}
}

// armLocked makes the timer fire at t at the latest.
func (h *heartbeats) armLocked(t time.Time) {
	if !h.at.IsZero() && !t.Before(h.at) {
		return
	}
	h.at = t
	d := time.Until(t)
	if h.timer == nil {
		h.timer = time.AfterFunc(d, h.round)
	} else {
		h.timer.Reset(d)
	}
}

// round kicks the writers due and re-arms for the next one due.
func (h *heartbeats) round() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = time.Time{}
	if len(h.conns) == 0 {
		return
	}
	now := time.Now()
	var next time.Time
	for _, c := range h.conns {
		if c.hb.next.Sub(now) <= hbSlack(c) {
			c.hb.next = now.Add(c.heartbeat / 2)
			c.hb.due.Store(true)
			c.kick()
		}
		if next.IsZero() || c.hb.next.Before(next) {
			next = c.hb.next
		}
	}
	h.armLocked(next)
}
