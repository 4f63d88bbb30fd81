package bench

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// producer publishes from one goroutine on its own connection and channel.
type producer struct {
	r    *runner
	idx  int
	tag  uint32
	key  string
	conn *amqp.Connection
	raw  net.Conn
	ch   *amqp.Channel

	// Buffered publisher (--client buffered): w and bp instead of conn
	// and ch. lastConfirmed is touched by w's reader only.
	w             *wireConn
	bp            *bufferedPublisher
	lastConfirmed uint64

	sent, confirmed, nacked, returned atomic.Int64

	// Confirm window: a token is put in sem before each publish and taken
	// out for each confirm. sendTimes[(deliveryTag-1) % window] holds the
	// publish time for confirm latency.
	sem       chan struct{}
	sendTimes []atomic.Int64
	lat       *latencyRecorder
	confirms  chan amqp.Confirmation
	confDone  chan struct{}

	finished atomic.Bool
	closing  atomic.Bool   // set before perftest closes conn
	loopDone chan struct{} // closed when the publish loop exits
	done     chan struct{} // closed when confirms are settled too
}

func (p *producer) isDone() bool { return p.finished.Load() }

func (r *runner) newProducer(i int) (*producer, error) {
	if r.cfg.Client == ClientBuffered {
		return r.newBufferedProducer(i)
	}
	c := &r.cfg
	conn, raw, err := r.dial(fmt.Sprintf("producer-%d", i))
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	p := &producer{
		r: r, idx: i, tag: producerTag(r.runTag, i), key: r.topo.producerKeys[i],
		conn: conn, raw: raw, ch: ch, done: make(chan struct{}), confDone: make(chan struct{}),
		loopDone: make(chan struct{}),
		lat:      newLatencyRecorder(),
	}
	if c.Confirm >= 0 {
		if err := ch.Confirm(false); err != nil {
			_ = conn.Close()
			return nil, err
		}
		buf := 1 << 16
		if c.Confirm > 0 {
			p.sem = make(chan struct{}, c.Confirm)
			p.sendTimes = make([]atomic.Int64, c.Confirm)
			buf = max(buf, c.Confirm)
		}
		p.confirms = ch.NotifyPublish(make(chan amqp.Confirmation, buf))
		go p.listenConfirms()
	} else {
		close(p.confDone)
	}
	if c.Mandatory {
		returns := ch.NotifyReturn(make(chan amqp.Return, 1024))
		go func() {
			for range returns {
				p.returned.Add(1)
			}
		}()
	}
	r.watch(fmt.Sprintf("producer #%d", i), conn, ch, &p.closing)
	return p, nil
}

// newBufferedProducer is newProducer for --publisher buffered: perftest's
// own client on shared/amqp (wire.go) instead of amqp091-go.
func (r *runner) newBufferedProducer(i int) (*producer, error) {
	c := &r.cfg
	w, err := dialWire(c.URI, fmt.Sprintf("perftest-%s-producer-%d", c.ID, i), r.heartbeat())
	if err != nil {
		return nil, err
	}
	p := &producer{
		r: r, idx: i, tag: producerTag(r.runTag, i), key: r.topo.producerKeys[i],
		w: w, bp: newBufferedPublisher(w, c.Exchange, r.topo.producerKeys[i], c.Mandatory, c.Persistent),
		done: make(chan struct{}), confDone: make(chan struct{}), loopDone: make(chan struct{}),
		lat: newLatencyRecorder(),
	}
	if c.Confirm >= 0 {
		if err := w.confirmSelect(); err != nil {
			_ = w.nc.Close()
			return nil, err
		}
		if c.Confirm > 0 {
			p.sem = make(chan struct{}, c.Confirm)
			p.sendTimes = make([]atomic.Int64, c.Confirm)
		}
		w.onConfirm = p.confirm
		go func() { <-w.readDone; close(p.confDone) }()
	} else {
		close(p.confDone)
	}
	if c.Mandatory {
		w.onReturn = func() { p.returned.Add(1) }
	}
	w.start()
	r.watchWire(fmt.Sprintf("producer #%d", i), w)
	return p, nil
}

// confirm handles one basic.ack or basic.nack on a buffered producer's
// connection, as listenConfirms does for amqp091-go's (which expands
// multiple confirms into one per tag).
func (p *producer) confirm(tag uint64, multiple, ack bool) {
	from := tag
	if multiple {
		from = p.lastConfirmed + 1
	}
	w := uint64(len(p.sendTimes))
	now := time.Now().UnixNano()
	for t := from; t <= tag; t++ {
		if ack {
			p.confirmed.Add(1)
		} else {
			p.nacked.Add(1)
		}
		if w > 0 && t > 0 {
			p.lat.record((now - p.sendTimes[(t-1)%w].Load()) / int64(time.Microsecond))
		}
		if p.sem != nil {
			select {
			case <-p.sem:
			default:
			}
		}
	}
	if tag > p.lastConfirmed {
		p.lastConfirmed = tag
	}
}

// flush writes a buffered producer's pending publishes; a no-op for
// amqp091-go, which writes each publish at once.
func (p *producer) flush() error {
	if p.bp == nil {
		return nil
	}
	return p.bp.flush()
}

// closeDeadline closes the producer's connection politely.
func (p *producer) closeDeadline(t time.Time) {
	if p.w != nil {
		_ = p.w.closeDeadline(t)
		return
	}
	_ = p.conn.CloseDeadline(t)
}

// cut closes the producer's socket under it.
func (p *producer) cut() {
	if p.w != nil {
		p.w.closing.Store(true) // the write error this causes is not the broker's
		_ = p.w.nc.Close()
		return
	}
	_ = p.raw.Close()
}

// listenConfirms counts confirms, records confirm latency and frees window
// slots. amqp091-go delivers confirmations in delivery-tag order.
func (p *producer) listenConfirms() {
	defer close(p.confDone)
	w := uint64(len(p.sendTimes))
	for cf := range p.confirms {
		if cf.Ack {
			p.confirmed.Add(1)
		} else {
			p.nacked.Add(1)
		}
		if w > 0 && cf.DeliveryTag > 0 {
			sent := p.sendTimes[(cf.DeliveryTag-1)%w].Load()
			p.lat.record((time.Now().UnixNano() - sent) / int64(time.Microsecond))
		}
		if p.sem != nil {
			select {
			case <-p.sem:
			default:
			}
		}
	}
}

// acquire takes a confirm window slot, waiting at most the confirm timeout.
func (p *producer) acquire(timer **time.Timer) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	default:
	}
	if err := p.flush(); err != nil {
		return err
	}
	to := p.r.cfg.ConfirmTimeout
	if *timer == nil {
		*timer = time.NewTimer(to)
	} else {
		(*timer).Reset(to)
	}
	select {
	case p.sem <- struct{}{}:
		(*timer).Stop()
		return nil
	case <-p.r.stopCh:
		(*timer).Stop()
		return errStopped
	case <-(*timer).C:
		return fmt.Errorf("producer #%d: no publisher confirm within %v (%d outstanding)",
			p.idx, to, cap(p.sem))
	}
}

var errStopped = fmt.Errorf("stopped")

// rateSlack is how early a buffered producer may publish under -r.
const rateSlack = 100 * time.Microsecond

func (p *producer) run(start time.Time) {
	defer close(p.done)
	defer p.finished.Store(true)
	c := &p.r.cfg
	body := make([]byte, c.Size)
	msg := amqp.Publishing{Body: body, DeliveryMode: amqp.Transient}
	if c.Persistent {
		msg.DeliveryMode = amqp.Persistent
	}
	limit := uint64(c.ProducerMessages)
	var interval float64
	if c.Rate > 0 {
		interval = float64(time.Second) / c.Rate
	}
	var timer *time.Timer
	var seq uint64
	for ; limit == 0 || seq < limit; seq++ {
		if p.r.stopping() {
			break
		}
		if interval > 0 {
			due := start.Add(time.Duration(float64(seq) * interval))
			// A buffered producer publishes up to rateSlack early rather than
			// sleep (and flush) before every message at high rates.
			if d := time.Until(due); d > 0 && (p.bp == nil || d > rateSlack) {
				if err := p.flush(); err != nil {
					p.r.fail(fmt.Errorf("producer #%d: publish: %w", p.idx, err))
					break
				}
				select {
				case <-time.After(d):
				case <-p.r.stopCh:
				}
				if p.r.stopping() {
					break
				}
			}
		}
		if p.sem != nil {
			if err := p.acquire(&timer); err != nil {
				if err != errStopped {
					p.r.fail(err)
				}
				break
			}
		}
		now := time.Now().UnixNano()
		if p.sendTimes != nil {
			p.sendTimes[seq%uint64(len(p.sendTimes))].Store(now)
		}
		EncodeHeader(body, seq, p.tag, now)
		var err error
		if p.bp != nil {
			err = p.bp.publish(now, body)
		} else {
			err = p.ch.Publish(c.Exchange, p.key, c.Mandatory, false, msg)
		}
		if err != nil {
			if !p.r.stopping() {
				p.r.fail(fmt.Errorf("producer #%d: publish: %w", p.idx, err))
			}
			break
		}
		p.sent.Add(1)
	}
	if err := p.flush(); err != nil && !p.r.stopping() {
		p.r.fail(fmt.Errorf("producer #%d: publish: %w", p.idx, err))
	}
	close(p.loopDone)
	if c.Confirm >= 0 {
		p.waitConfirms()
	}
}

// waitConfirms waits until every published message is confirmed or nacked,
// at most the confirm timeout; what is left is reported as unconfirmed.
func (p *producer) waitConfirms() {
	deadline := time.Now().Add(p.r.cfg.ConfirmTimeout)
	for p.confirmed.Load()+p.nacked.Load() < p.sent.Load() {
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-p.confDone: // channel closed
			return
		case <-time.After(time.Millisecond):
		}
	}
}
