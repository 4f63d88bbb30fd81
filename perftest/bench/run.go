package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Stop reasons, as PerfTest prints them.
const (
	ReasonTimeLimit    = "Reached time limit"
	ReasonMessageLimit = "Producer(s) and consumer(s) reached message limit"
	ReasonSignal       = "Signal"
	ReasonError        = "Error"
)

const maxRecordedErrors = 10

type runner struct {
	cfg    Config
	out    io.Writer
	topo   *topology
	runTag uint16

	stopCh   chan struct{}
	stopOnce sync.Once
	fatalCh  chan struct{}

	errMu     sync.Mutex
	errs      []string
	fatalOnce sync.Once

	setup           *amqp.Connection
	createdExchange bool
	declared        []string // non-exclusive queues perftest declared

	producers []*producer
	consumers []*consumer
	child     bool // a child process's part of a run (--producer-processes, --consumer-processes)
	trackers  map[string]*QueueTracker
	serverQ   map[string]bool // server-named queues
}

// Run executes one perftest run: it declares the topology, starts the
// consumers and then the producers, prints a report line every interval to
// out, stops on the time limit, the message limits, cancellation of ctx
// (SIGINT/SIGTERM) or the first protocol error, cleans up and prints the
// summary. The Result is returned even when err is not nil, unless the run
// could not start. err reports protocol errors, unconfirmed messages and
// (for count-bounded runs) lost messages.
func Run(ctx context.Context, cfg Config, out io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	topo, err := planTopology(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.childRole == "" && (cfg.ProducerProcesses > 0 || cfg.ConsumerProcesses > 0) {
		return runProcesses(ctx, cfg, topo, out)
	}
	r := &runner{
		cfg:      cfg,
		out:      out,
		topo:     topo,
		runTag:   uint16(rand.Uint32()),
		stopCh:   make(chan struct{}),
		fatalCh:  make(chan struct{}),
		trackers: map[string]*QueueTracker{},
		serverQ:  map[string]bool{},
		child:    cfg.childRole != "",
	}
	if cfg.runTag > 0 {
		r.runTag = uint16(cfg.runTag - 1)
	}
	defer r.closeAll()
	if err := r.declare(); err != nil {
		return nil, err
	}
	for i := range cfg.Consumers {
		if !r.mine("consumers", i) {
			continue
		}
		fmt.Fprintf(out, "id: %s, starting consumer #%d\n", cfg.ID, i)
		c, err := r.newConsumer(i)
		if err != nil {
			r.stop()
			r.cleanup()
			return nil, fmt.Errorf("consumer #%d: %w", i, err)
		}
		fmt.Fprintf(out, "id: %s, starting consumer #%d, channel #0\n", cfg.ID, i)
		r.consumers = append(r.consumers, c)
	}
	for i := range cfg.Producers {
		if !r.mine("producers", i) {
			continue
		}
		fmt.Fprintf(out, "id: %s, starting producer #%d\n", cfg.ID, i)
		p, err := r.newProducer(i)
		if err != nil {
			r.stop()
			r.cleanup()
			return nil, fmt.Errorf("producer #%d: %w", i, err)
		}
		fmt.Fprintf(out, "id: %s, starting producer #%d, channel #0\n", cfg.ID, i)
		r.producers = append(r.producers, p)
	}

	if r.child {
		fmt.Fprintf(out, "%s\n", childReady)
	}
	start := time.Now()
	for _, c := range r.consumers {
		go c.run()
	}
	for _, p := range r.producers {
		go p.run(start)
	}
	rep := r.reporter()
	repDone := make(chan struct{})
	repStop := make(chan struct{})
	go r.report(rep, start, repStop, repDone)

	reason, complete := r.control(ctx)
	r.stop()
	stopped := time.Now()
	close(repStop)
	<-repDone
	// A producer can be stuck in a socket write while the broker applies
	// back-pressure; give it a moment, then cut its socket.
	// The timer fires once: after it, every producer still stuck is cut at
	// once.
	grace := time.NewTimer(stopGrace)
	expired := false
	for _, p := range r.producers {
		if !expired {
			select {
			case <-p.loopDone:
				continue
			case <-grace.C:
				expired = true
			}
		}
		select {
		case <-p.loopDone:
		default:
			p.cut()
		}
	}
	grace.Stop()
	// Close every connection before anything is deleted: a producer's close
	// waits for the broker to process everything published before. They are
	// closed all at once: a broker that stops reading a publisher while its
	// queue has consumers and a backlog (flow control) reads it again once
	// the consumers have gone, and closing one after another could wait the
	// close timeout for each.
	var closing sync.WaitGroup
	for _, p := range r.producers {
		<-p.done
		p.closing.Store(true)
		closing.Go(func() { p.closeDeadline(time.Now().Add(closeTimeout)) })
	}
	for _, c := range r.consumers {
		<-c.done
		c.closing.Store(true)
		closing.Go(func() { c.closeDeadline(time.Now().Add(closeTimeout)) })
	}
	closing.Wait()
	fmt.Fprintf(out, "id: %s, test stopped (%s)\n", cfg.ID, reason)

	res := r.result(stopped.Sub(start), reason, complete)
	r.cleanup()
	res.PerftestCPUS = ownCPU()
	fmt.Fprint(out, rep.Summary(res))
	var errs []error
	for _, e := range r.errors() {
		errs = append(errs, errors.New(e))
	}
	if res.Unconfirmed > 0 {
		errs = append(errs, fmt.Errorf("%d messages unconfirmed at the end of the run", res.Unconfirmed))
	}
	if res.LossChecked && res.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d messages lost", res.Lost))
	}
	res.Errors = nil
	for _, e := range errs {
		res.Errors = append(res.Errors, e.Error())
	}
	return res, errors.Join(errs...)
}

// fail records an error and ends the run.
func (r *runner) fail(err error) {
	r.errMu.Lock()
	if len(r.errs) < maxRecordedErrors {
		r.errs = append(r.errs, err.Error())
	}
	r.errMu.Unlock()
	r.fatalOnce.Do(func() { close(r.fatalCh) })
}

func (r *runner) errors() []string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return append([]string(nil), r.errs...)
}

func (r *runner) stop() { r.stopOnce.Do(func() { close(r.stopCh) }) }

func (r *runner) stopping() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// stopGrace is how long a producer may take to leave its publish loop once
// the run stops before its socket is closed under it.
const stopGrace = 2 * time.Second

// closeTimeout bounds the wait for connection.close-ok at the end of a run.
const closeTimeout = 5 * time.Second

// dial opens a connection named after the test id; it also returns the raw
// socket so that a producer blocked by broker back-pressure can be cut off.
func (r *runner) dial(name string) (*amqp.Connection, net.Conn, error) {
	hb := r.heartbeat()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(fmt.Sprintf("perftest-%s-%s", r.cfg.ID, name))
	var raw net.Conn
	dial := func(network, addr string) (net.Conn, error) {
		c, err := net.DialTimeout(network, addr, 30*time.Second)
		raw = c
		return c, err
	}
	conn, err := amqp.DialConfig(r.cfg.URI, amqp.Config{Heartbeat: hb, Locale: "en_US", Properties: props, Dial: dial})
	if err != nil {
		return nil, nil, err
	}
	return conn, raw, nil
}

// heartbeat is the heartbeat interval perftest asks for.
func (r *runner) heartbeat() time.Duration {
	if r.cfg.Heartbeat > 0 {
		return r.cfg.Heartbeat
	}
	return 10 * time.Second
}

// watchWire is watch for a buffered producer's connection.
func (r *runner) watchWire(what string, w *wireConn) {
	go func() {
		select {
		case <-w.errCh:
		case <-w.readDone:
			return
		}
		var e *amqp.Error
		if errors.As(w.Err(), &e) && e.Code == amqp.FrameError && w.closing.Load() {
			fmt.Fprintf(r.out, "id: %s, warning: %s: connection closed during shutdown: %v\n", r.cfg.ID, what, e)
			return
		}
		r.fail(fmt.Errorf("%s: closed by server: %v", what, w.Err()))
	}()
}

// watch turns a server-initiated connection or channel close into a run
// error. closing is set by perftest before it closes conn itself: a
// socket-level error (501, e.g. EOF) seen then is the broker closing the
// socket right after connection.close-ok, which amqp091-go can report as an
// error; it is printed as a warning. Channel and connection exceptions
// (404, 406, 320, ...) always count.
func (r *runner) watch(what string, conn *amqp.Connection, ch *amqp.Channel, closing *atomic.Bool) {
	report := func(kind string, e *amqp.Error) {
		if e.Code == amqp.FrameError && closing.Load() {
			fmt.Fprintf(r.out, "id: %s, warning: %s: %s closed during shutdown: %v\n", r.cfg.ID, what, kind, e)
			return
		}
		r.fail(fmt.Errorf("%s: %s closed by server: %v", what, kind, e))
	}
	cc := conn.NotifyClose(make(chan *amqp.Error, 1))
	var chc chan *amqp.Error
	if ch != nil {
		chc = ch.NotifyClose(make(chan *amqp.Error, 1))
	}
	go func() {
		for cc != nil || chc != nil {
			select {
			case e, ok := <-cc:
				if !ok {
					cc = nil
					continue
				}
				if e != nil {
					report("connection", e)
				}
			case e, ok := <-chc:
				if !ok {
					chc = nil
					continue
				}
				if e != nil {
					report("channel", e)
				}
			}
		}
	}()
}

// declare opens the setup connection and declares the exchange and the named
// queues, unless --predeclared.
func (r *runner) declare() error {
	if r.child { // the parent declared
		return r.addNamedTrackers()
	}
	conn, _, err := r.dial("setup")
	if err != nil {
		return err
	}
	r.setup = conn
	if r.cfg.Predeclared {
		return r.addNamedTrackers()
	}
	c := &r.cfg
	if !isDefaultExchange(c.Exchange) {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.ExchangeDeclarePassive(c.Exchange, c.ExchangeType, false, false, false, false, nil); err != nil {
			if !isNotFound(err) {
				return fmt.Errorf("checking exchange %q: %w", c.Exchange, err)
			}
			if ch, err = conn.Channel(); err != nil {
				return err
			}
			if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, false, false, false, false, nil); err != nil {
				return fmt.Errorf("declaring exchange %q: %w", c.Exchange, err)
			}
			r.createdExchange = true
		}
		_ = ch.Close()
	}
	if len(r.topo.named) > 0 {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		for _, q := range r.topo.named {
			if _, err := ch.QueueDeclare(q, c.Persistent, c.AutoDelete, c.Exclusive, false, c.QueueArgs); err != nil {
				return fmt.Errorf("declaring queue %q: %w", q, err)
			}
			r.declared = append(r.declared, q)
			if !isDefaultExchange(c.Exchange) {
				if err := ch.QueueBind(q, r.topo.bindKey[q], c.Exchange, false, nil); err != nil {
					return fmt.Errorf("binding queue %q: %w", q, err)
				}
			}
		}
		_ = ch.Close()
	}
	return r.addNamedTrackers()
}

func (r *runner) addNamedTrackers() error {
	for _, q := range r.topo.consumerQueues {
		if q != "" && r.trackers[q] == nil {
			r.trackers[q] = NewQueueTracker(q, r.cfg.Producers)
		}
	}
	return nil
}

// cleanup deletes the queues and the exchange perftest declared, unless
// --predeclared or --auto-delete false (PerfTest leaves such queues in
// place, e.g. to be consumed by a later run).
func (r *runner) cleanup() {
	if r.child || r.setup == nil || r.setup.IsClosed() || r.cfg.Predeclared {
		return
	}
	var ch *amqp.Channel
	channel := func() *amqp.Channel {
		if ch == nil || ch.IsClosed() {
			ch, _ = r.setup.Channel()
		}
		return ch
	}
	if r.cfg.AutoDelete {
		for _, q := range r.declared {
			if c := channel(); c != nil {
				_, _ = c.QueueDelete(q, false, false, false)
			}
		}
	}
	if r.createdExchange {
		if c := channel(); c != nil {
			_ = c.ExchangeDelete(r.cfg.Exchange, true, false)
		}
	}
	if ch != nil && !ch.IsClosed() {
		_ = ch.Close()
	}
}

func (r *runner) closeAll() {
	for _, p := range r.producers {
		p.closeDeadline(time.Now().Add(time.Second))
	}
	for _, c := range r.consumers {
		c.closeDeadline(time.Now().Add(time.Second))
	}
	if r.setup != nil {
		_ = r.setup.Close()
	}
}

// control waits for the end of the run and returns why it ended and whether
// the message limits were reached (which enables the loss check).
func (r *runner) control(ctx context.Context) (string, bool) {
	c := &r.cfg
	var timeLimit <-chan time.Time
	if c.Time > 0 {
		t := time.NewTimer(c.Time)
		defer t.Stop()
		timeLimit = t.C
	}
	pBounded := c.ProducerMessages > 0 && len(r.producers) > 0
	cBounded := c.ConsumerMessages > 0 && len(r.consumers) > 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ReasonSignal, false
		case <-r.fatalCh:
			return ReasonError, false
		case <-timeLimit:
			return ReasonTimeLimit, false
		case <-tick.C:
		}
		if !pBounded && !cBounded {
			continue
		}
		if pBounded && !allDone(r.producers) {
			continue
		}
		if cBounded && !allDone(r.consumers) {
			continue
		}
		if !pBounded || cBounded || len(r.consumers) == 0 {
			return ReasonMessageLimit, true
		}
		break
	}
	// Producers are done and consumers are unbounded: wait until the
	// consumers have received everything that was routed to them.
	expected := r.expectedReceived()
	idle := max(2*time.Second, 2*c.Interval)
	deadline := time.NewTimer(c.DrainTimeout)
	defer deadline.Stop()
	last, lastChange := r.settled(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return ReasonSignal, false
		case <-r.fatalCh:
			return ReasonError, false
		case <-timeLimit:
			return ReasonTimeLimit, false
		case <-deadline.C:
			return ReasonMessageLimit, true
		case <-tick.C:
		}
		n := r.settled()
		if n >= expected {
			return ReasonMessageLimit, true
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > idle {
			return ReasonMessageLimit, true
		}
	}
}

type doner interface{ isDone() bool }

func allDone[T doner](xs []T) bool {
	for _, x := range xs {
		if !x.isDone() {
			return false
		}
	}
	return true
}

// settled returns the deliveries the consumers kept: received minus those
// they nacked back to their queues (--nack-every).
func (r *runner) settled() int64 {
	var n int64
	for _, c := range r.consumers {
		n += c.received.Load() - c.requeued.Load()
	}
	return n
}

func (r *runner) received() int64 {
	var n int64
	for _, c := range r.consumers {
		n += c.received.Load()
	}
	return n
}

// delivered returns how many messages of producer p should have reached a
// queue: published minus nacked minus returned.
func (p *producer) delivered() int64 {
	return max(0, p.sent.Load()-p.nacked.Load()-p.returned.Load())
}

// expectedReceived returns how many deliveries the consumers should get in
// total once every routed message has arrived.
func (r *runner) expectedReceived() int64 {
	var n int64
	for q := range r.trackers {
		for _, p := range r.producers {
			if r.topo.routes(&r.cfg, p.idx, q, r.serverQ[q]) {
				n += p.delivered()
			}
		}
	}
	return n
}

// reporter returns the formatter for this run.
func (r *runner) reporter() *Reporter {
	return &Reporter{
		ID:             r.cfg.ID,
		Published:      r.cfg.Producers > 0,
		Received:       r.cfg.Consumers > 0,
		Returned:       r.cfg.Mandatory,
		Confirmed:      r.cfg.Confirm >= 0,
		ConfirmLatency: r.cfg.Confirm > 0,
	}
}

type totals struct{ sent, returned, confirmed, nacked, received int64 }

func (r *runner) totals() totals {
	var t totals
	for _, p := range r.producers {
		t.sent += p.sent.Load()
		t.returned += p.returned.Load()
		t.confirmed += p.confirmed.Load()
		t.nacked += p.nacked.Load()
	}
	t.received = r.received()
	return t
}

// report prints one line per interval until stop is closed.
func (r *runner) report(rep *Reporter, start time.Time, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	cons, conf := newHist(), newHist()
	prev, prevAt := totals{}, start
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			cur := r.totals()
			secs := now.Sub(prevAt).Seconds()
			rate := func(a, b int64) float64 { return float64(a-b) / secs }
			cons.Reset()
			conf.Reset()
			for _, c := range r.consumers {
				c.lat.drainInterval(cons)
			}
			for _, p := range r.producers {
				if p.lat != nil {
					p.lat.drainInterval(conf)
				}
			}
			fmt.Fprintln(r.out, rep.Line(now.Sub(start), Rates{
				Sent:      rate(cur.sent, prev.sent),
				Returned:  rate(cur.returned, prev.returned),
				Confirmed: rate(cur.confirmed, prev.confirmed),
				Nacked:    rate(cur.nacked, prev.nacked),
				Received:  rate(cur.received, prev.received),
			}, LatencyOf(cons), LatencyOf(conf)))
			prev, prevAt = cur, now
		}
	}
}

// result computes the final numbers once every producer and consumer has
// stopped.
func (r *runner) result(elapsed time.Duration, reason string, complete bool) *Result {
	t := r.totals()
	res := &Result{
		ID:         r.cfg.ID,
		Sent:       t.sent,
		Confirmed:  t.confirmed,
		Nacked:     t.nacked,
		Returned:   t.returned,
		Received:   t.received,
		DurationS:  elapsed.Seconds(),
		StopReason: reason,
	}
	for _, c := range r.consumers {
		res.Requeued += c.requeued.Load()
	}
	if s := elapsed.Seconds(); s > 0 {
		res.SendRate = float64(t.sent) / s
		res.ReceiveRate = float64(t.received) / s
	}
	h := newHist()
	for _, c := range r.consumers {
		c.lat.mergeTotal(h)
		res.OutOfOrder += int64(c.order.OutOfOrder())
	}
	res.LatencyUS = LatencyOf(h)
	if r.cfg.Confirm > 0 && len(r.producers) > 0 {
		h := newHist()
		for _, p := range r.producers {
			p.lat.mergeTotal(h)
		}
		l := LatencyOf(h)
		res.ConfirmLatencyUS = &l
	}
	if r.cfg.Confirm >= 0 {
		res.Unconfirmed = max(0, t.sent-t.confirmed-t.nacked)
	}
	for _, q := range r.trackers {
		res.Duplicates += int64(q.Duplicates())
	}
	if r.child {
		res.LatencyHist = h.Export()
		if r.cfg.Confirm > 0 && len(r.producers) > 0 {
			ch := newHist()
			for _, p := range r.producers {
				p.lat.mergeTotal(ch)
			}
			res.ConfirmHist = ch.Export()
		}
	}
	res.LossChecked = !r.child && complete && !r.cfg.Predeclared && r.cfg.ProducerMessages > 0 &&
		r.cfg.ConsumerMessages == 0 && len(r.consumers) > 0
	if res.LossChecked {
		for q, tr := range r.trackers {
			for _, p := range r.producers {
				i := p.idx
				if r.topo.routes(&r.cfg, i, q, r.serverQ[q]) {
					sent := uint64(p.sent.Load())
					got := int64(sent - tr.Missing(i, sent))
					res.Lost += max(0, p.delivered()-got)
				}
			}
		}
	}
	return res
}
