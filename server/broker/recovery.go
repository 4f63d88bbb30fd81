package broker

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
	"github.com/amqp-go/amqp-go/shared/wal"
)

// Open builds a server. With cfg.DataDir set it opens the durable state
// there: it takes the data directory's lock (the segment log's), checks the
// storage version, recovers durable definitions from Badger and then each
// durable queue's messages from the log, and logs what it recovered.
// Without DataDir it is New.
func Open(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return New(cfg), nil
	}
	if cfg.SegmentSize > store.MaxSegmentSize {
		return nil, fmt.Errorf("segment size %d is over the %d bytes a message reference can address", cfg.SegmentSize, store.MaxSegmentSize)
	}
	if err := wal.MkdirPrivate(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkStartSpace(cfg.DataDir); err != nil {
		return nil, err
	}
	sync := wal.SyncBatch
	switch {
	case cfg.NoSync:
		sync = wal.SyncNever
	case cfg.FsyncEveryRecord:
		sync = wal.SyncAlways
	}
	start := time.Now()
	// The log fails once (write or fsync error); the server is made below,
	// so the hook reaches it through a variable set before any append.
	var s *Server
	onFailure := func(err error) {
		s.logger.Error("message log failed: persistent publishes are nacked and publishers blocked until restart", "err", err)
		s.storeFailure()
	}
	messages, err := store.OpenFile(store.FileOptions{Dir: filepath.Join(cfg.DataDir, "messages"),
		SegmentSize: cfg.SegmentSize, BatchBytes: cfg.WALBatchBytes, Sync: sync, BatchDelay: cfg.WALBatchDelay,
		FS: cfg.logFS, OnFailure: onFailure, DiscardPersistent: cfg.DiscardPersistent})
	if err != nil {
		return nil, fmt.Errorf("message log in %s: %w", cfg.DataDir, err)
	}
	rec, err := messages.Recover()
	if err != nil {
		messages.Close()
		return nil, fmt.Errorf("message log in %s: %w", cfg.DataDir, err)
	}
	defs, err := openDefinitions(cfg.OpenDefinitions, filepath.Join(cfg.DataDir, "definitions"))
	if err != nil {
		messages.Close()
		return nil, err
	}
	if err := defs.restoreSecurity(&cfg); err != nil {
		messages.Close()
		defs.close()
		return nil, err
	}
	cfg.Store = messages
	s = New(cfg)
	s.defs = defs
	s.persistSecurity()
	bound, err := loadDelivered(defs)
	if err != nil {
		messages.Close()
		defs.close()
		return nil, fmt.Errorf("definitions store: %w", err)
	}
	if err := s.recover(rec, start, bound); err != nil {
		s.store.Close()
		defs.close()
		return nil, err
	}
	s.startDelayed() // due messages enter queues after their recovered ones
	interval := cfg.CheckpointInterval
	if interval <= 0 {
		interval = time.Second
	}
	s.delivered = newDeliveredMark(defs, bound, interval, s.guardDefinitions)
	return s, nil
}

// recover applies the stored exchanges, queues and bindings through Apply
// (without storing them again), then fills each durable queue with its
// live messages as log references (nothing is read back until a consumer
// needs it, so recovery costs one scan of the log).
func (s *Server) recover(rec *store.Recovered, start time.Time, deliveredBound uint64) error {
	defs, err := s.defs.load()
	if err != nil {
		return err
	}
	byID := map[uint64]*Queue{}
	for _, d := range defs {
		vname := d.parts[0]
		v := s.vhosts[vname]
		if v == nil {
			v = newVHost(s, vname)
			s.vhosts[vname] = v
		}
		if err := s.recoverDef(v, d, byID); err != nil {
			return err
		}
	}

	delayed := s.delayedByID()
	var messages int
	// Recovered messages go to their queue in batches, one lock each.
	batch := make([]queue.Message[qhandle], 0, 4096)
	for id, rq := range rec.Queues {
		q := byID[uint64(id)]
		if d := delayed[uint64(id)]; q == nil && d != nil {
			// A durable delayed exchange's waiting messages.
			d.recoverEntries(rq.Entries())
			messages += rq.Len()
			if rq.Corrupt {
				s.logger.Error("message log corruption: a delayed exchange may have lost waiting messages",
					"vhost", d.x.vhost.name, "exchange", d.x.Name)
			}
			continue
		}
		if q == nil {
			// Its definition is gone: the queue was deleted and the crash
			// came before the log heard of it.
			s.store.DropQueue(id)
			continue
		}
		now := queue.Now()
		batch = batch[:0]
		for e := range rq.Entries() {
			// Only messages at or below the delivered bound can have
			// reached a consumer before the restart.
			m := queue.Message[qhandle]{Handle: qhandle{ref: e.Ref}, Timestamp: now,
				Size: e.Size, Priority: e.Meta.Priority, Redelivered: e.Ref.ID <= deliveredBound}
			if e.Meta.Timestamp != 0 {
				// The TTL clock started at publish, not at the restart.
				m.Timestamp = e.Meta.Timestamp
				m.Expires = q.recoveredExpiry(e.Meta)
			}
			if batch = append(batch, m); len(batch) == cap(batch) {
				q.cq.PushRecovered(batch)
				batch = batch[:0]
			}
		}
		q.cq.PushRecovered(batch)
		clear(batch) // no handle kept alive by the scratch
		messages += rq.Len()
		if rq.Corrupt {
			q.unavailable = "the message log has a corrupt record that may belong to it"
		}
	}
	for _, c := range rec.Corruptions {
		var names []string
		for _, id := range c.Queues {
			if q := byID[uint64(id)]; q != nil {
				names = append(names, q.Name)
			}
		}
		if len(c.Queues) == 0 {
			// Nothing says whose record it was: any durable queue may have
			// lost a message, so refuse them all rather than guess.
			for _, q := range byID {
				q.unavailable = "the message log has a corrupt record that may belong to it"
				names = append(names, q.Name)
			}
		}
		s.logger.Error("message log corruption; affected queues are refused until recovery-tool repair",
			"file", c.File, "offset", c.Offset, "reason", c.Reason, "queues", names)
	}
	if t := rec.TornTail; t != nil {
		s.logger.Warn("message log: torn tail truncated", "file", t.File, "offset", t.Offset, "bytes", t.Bytes, "reason", t.Reason)
	}
	took := time.Since(start)
	rate := 0.0
	if took > 0 {
		rate = float64(messages) / took.Seconds()
	}
	s.logger.Info("recovered", "queues", len(byID), "messages", messages, "bytes", rec.Bytes,
		"seconds", fmt.Sprintf("%.3f", took.Seconds()), "msg_per_s", fmt.Sprintf("%.0f", rate),
		"segments", rec.Segments, "scan_seconds", fmt.Sprintf("%.3f", rec.Duration.Seconds()))
	return nil
}

// recoverDef applies one stored definition to v, without storing it
// again; a recovered queue is entered in byID.
func (s *Server) recoverDef(v *VHost, d storedDef, byID map[uint64]*Queue) error {
	args, _ := d.t["arguments"].(amqp.Table)
	ad, _ := d.t["auto_delete"].(bool)
	ch := DefChange{Durable: true, AutoDelete: ad, Arguments: nilIfEmpty(args)}
	switch d.kind {
	case 'x':
		ch.Kind, ch.Exchange = ExchangeDeclare, d.parts[1]
		ch.Type, _ = d.t["type"].(string)
		ch.Internal, _ = d.t["internal"].(bool)
		id, _ := d.t["id"].(int64) // a durable delayed exchange's log id
		if _, err := v.Apply(ch, fromStore(uint64(id))); err != nil {
			return fmt.Errorf("definitions: exchange %q in vhost %q: %v", ch.Exchange, v.name, err)
		}
	case 'q':
		id, _ := d.t["id"].(int64)
		ch.Kind, ch.Queue = QueueDeclare, d.parts[1]
		r, err := v.Apply(ch, fromStore(uint64(id)))
		if err != nil {
			return fmt.Errorf("definitions: queue %q: %v", ch.Queue, err)
		}
		if home, _ := d.t["home"].(int64); home != 0 {
			// The cluster's, homed here: the metadata group's snapshots
			// and log say whether it still is.
			name, _ := d.t["home_name"].(string)
			index, _ := d.t["home_index"].(int64)
			r.Queue.home.Store(&homeNode{id: uint64(home), name: name, index: uint64(index)})
		}
		byID[r.Queue.id] = r.Queue
	case 'b':
		ch = DefChange{Kind: Bind, Exchange: d.parts[1], ToExchange: d.parts[2] == "x", Destination: d.parts[3],
			RoutingKey: d.parts[4], Arguments: nilIfEmpty(args)}
		_, err := v.Apply(ch, fromStore(0))
		var ae *amqpError
		if errors.As(err, &ae) && ae.code == amqp.NotFound {
			s.logger.Warn("recovery: binding with a missing end dropped", "vhost", v.name,
				"source", ch.Exchange, "destination", ch.Destination)
			s.dropStoredBinding(d)
		} else if err != nil {
			return fmt.Errorf("definitions: binding of %q: %v", ch.Exchange, err)
		}
	}
	return nil
}

// dropStoredBinding deletes a stored binding that recovery could not
// restore, so it cannot come back to life when its missing end is declared
// again.
func (s *Server) dropStoredBinding(d storedDef) {
	if err := s.defs.deleteStoredBinding(d); err != nil {
		s.logger.Error("definitions store delete failed", "binding", d.parts[4], "err", err)
	}
}

func nilIfEmpty(t amqp.Table) amqp.Table {
	if len(t) == 0 {
		return nil
	}
	return t
}

// persistence hooks: each is a no-op without a definitions store, or for
// a transient object. Apply calls them under the vhost's defsMu, before it
// changes memory. persist* and forgetBinding answer a failure as 541
// INTERNAL_ERROR (the change could not be made durable), or 506 from the
// disk guard; forgetExchange and forgetQueue return it for Apply to answer
// or, for the broker's own deletes, log.

func (s *Server) persistErr(m amqp.Method, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errDefinitionsBlocked) {
		return resourceError(m, "%v", err)
	}
	s.logger.Error("definitions store write failed", "err", err)
	return protoErr(amqp.InternalError, m, "could not store the definition: %v", err)
}

func (s *Server) persistExchange(m amqp.Method, v *VHost, x *Exchange) error {
	if s.defs == nil || !x.Durable {
		return nil
	}
	return s.persistErr(m, s.writeDefs(func() error {
		if err := s.assignDelayedID(x); err != nil {
			return err
		}
		return s.defs.putExchange(v.name, x)
	}))
}

// forgetExchange deletes x's definition and the stored ones among bs, the
// bindings into and out of it.
func (s *Server) forgetExchange(v *VHost, x *Exchange, bs []*binding) error {
	if s.defs == nil || !x.Durable {
		return nil
	}
	return s.writeDefs(func() error { return s.defs.deleteWithBindings(key("x", v.name, x.Name), v.name, bs) })
}

// persistQueue gives a new durable, non-exclusive queue its id and stores it.
func (s *Server) persistQueue(m amqp.Method, v *VHost, q *Queue) error {
	if s.defs == nil || !q.Durable || q.Exclusive {
		return nil
	}
	return s.persistErr(m, s.writeDefs(func() error {
		id, err := s.defs.nextQueueID()
		if err != nil {
			return err
		}
		q.id = id
		return s.defs.putQueue(v.name, q)
	}))
}

// persistHome stores q's definition again with its home: a queue
// recovered from a store that did not mark it, which the cluster's log
// declares again.
func (s *Server) persistHome(v *VHost, q *Queue) error {
	if s.defs == nil || q.id == 0 {
		return nil
	}
	return s.writeDefs(func() error { return s.defs.putQueue(v.name, q) })
}

// forgetQueue deletes q's definition and the stored ones among bs, its
// bindings.
func (s *Server) forgetQueue(v *VHost, q *Queue, bs []*binding) error {
	if s.defs == nil || q.id == 0 {
		return nil
	}
	return s.writeDefs(func() error { return s.defs.deleteWithBindings(key("q", v.name, q.Name), v.name, bs) })
}

// durableBinding reports whether a binding outlives a restart: both ends
// must.
func durableBinding(x *Exchange, b *binding) bool {
	if !x.Durable || x.Name == "" {
		return false
	}
	if b.q != nil {
		return b.q.id != 0
	}
	return b.x.Durable
}

func (s *Server) persistBinding(m amqp.Method, v *VHost, x *Exchange, b *binding) error {
	if s.defs == nil || !durableBinding(x, b) {
		return nil
	}
	return s.persistErr(m, s.writeDefs(func() error { return s.defs.putBinding(v.name, x.Name, b) }))
}

// forgetBinding deletes b's definition.
func (s *Server) forgetBinding(m amqp.Method, v *VHost, x *Exchange, b *binding) error {
	if s.defs == nil || !durableBinding(x, b) {
		return nil
	}
	return s.persistErr(m, s.writeDefs(func() error { return s.defs.deleteKeys(bindingKey_(v.name, x.Name, b)) }))
}
