package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// wireConn is perftest's own minimal AMQP client on shared/amqp, used by the
// buffered publisher (--client buffered): one connection, one channel
// (number 1), publishes appended to a write buffer that is flushed in
// batches instead of once per publish as amqp091-go does. It speaks just
// what a producer needs: the handshake, confirm.select, basic.publish,
// confirms (basic.ack/nack from the broker), basic.return, heartbeats and the
// closing handshakes.
type wireConn struct {
	nc       net.Conn
	fr       *wire.FrameReader
	frameMax uint32

	wmu       sync.Mutex
	wbuf      []byte
	lastWrite atomic.Int64 // UnixNano of the last socket write (heartbeats)

	// onConfirm is called by the reader for each basic.ack/nack.
	onConfirm func(tag uint64, multiple, ack bool)
	// onReturn is called by the reader for each basic.return.
	onReturn func()

	closeOnce sync.Once
	closing   atomic.Bool // set when perftest starts closing
	errMu     sync.Mutex
	err       error         // the server's close, or the socket error
	errCh     chan struct{} // closed when err is set
	closeOk   chan struct{} // closed when connection.close-ok arrives
	readDone  chan struct{}
	hbStop    chan struct{}
}

// wireChannel is the channel number wireConn uses.
const wireChannel = 1

// Buffered publisher flush policy: the buffer is written when it holds
// flushBytes, when its oldest unflushed publish is flushAge old, and always
// before the producer blocks (confirm window, rate limit, end of run).
const (
	flushBytes = 64 << 10
	flushAge   = 200 * time.Microsecond
)

// dialWire opens a connection and channel 1 on it, as amqp091-go would for
// the same URI (same vhost rules, PLAIN credentials).
func dialWire(uri, name string, heartbeat time.Duration) (*wireConn, error) {
	u, err := amqp.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "amqp" {
		return nil, fmt.Errorf("--client buffered supports amqp:// only, not %s://", u.Scheme)
	}
	nc, err := net.DialTimeout("tcp", net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), 30*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &wireConn{
		nc: nc, fr: wire.NewFrameReader(nc, 1<<20),
		errCh: make(chan struct{}), closeOk: make(chan struct{}), readDone: make(chan struct{}),
		hbStop: make(chan struct{}),
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.handshake(u, name, heartbeat); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *wireConn) handshake(u amqp.URI, name string, heartbeat time.Duration) error {
	if _, err := c.nc.Write(wire.ProtocolHeader); err != nil {
		return err
	}
	if _, err := c.expect(0, "connection.start"); err != nil {
		return err
	}
	props := wire.Table{
		"product": "perftest (buffered publisher)", "connection_name": name,
		"capabilities": wire.Table{"publisher_confirms": true, "basic.nack": true,
			"consumer_cancel_notify": true, "connection.blocked": true},
	}
	c.wbuf = wire.AppendMethodFrame(c.wbuf, 0, &wire.ConnectionStartOk{ClientProperties: props,
		Mechanism: "PLAIN", Response: "\x00" + u.Username + "\x00" + u.Password, Locale: "en_US"})
	if err := c.flushLocked(); err != nil {
		return err
	}
	m, err := c.expect(0, "connection.tune")
	if err != nil {
		return err
	}
	tune := m.(*wire.ConnectionTune)
	c.frameMax = 128 << 10
	if tune.FrameMax != 0 && tune.FrameMax < c.frameMax {
		c.frameMax = tune.FrameMax
	}
	hb := uint16(heartbeat / time.Second)
	if tune.Heartbeat != 0 && (hb == 0 || tune.Heartbeat < hb) {
		hb = tune.Heartbeat
	}
	c.fr.SetMaxFrame(c.frameMax)
	c.wbuf = wire.AppendMethodFrame(c.wbuf, 0, &wire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: c.frameMax, Heartbeat: hb})
	c.wbuf = wire.AppendMethodFrame(c.wbuf, 0, &wire.ConnectionOpen{VirtualHost: u.Vhost})
	if err := c.flushLocked(); err != nil {
		return err
	}
	if _, err := c.expect(0, "connection.open-ok"); err != nil {
		return err
	}
	c.wbuf = wire.AppendMethodFrame(c.wbuf, wireChannel, &wire.ChannelOpen{})
	if err := c.flushLocked(); err != nil {
		return err
	}
	if _, err := c.expect(wireChannel, "channel.open-ok"); err != nil {
		return err
	}
	if hb > 0 {
		go c.heartbeats(time.Duration(hb) * time.Second / 2)
	}
	return nil
}

// expect reads the next method frame, which must be name on channel ch
// (heartbeats are skipped); a connection.close or channel.close is returned
// as an error.
func (c *wireConn) expect(ch uint16, name string) (wire.Method, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		if f.Type != wire.FrameMethod {
			return nil, fmt.Errorf("want %s, got a frame of type %d", name, f.Type)
		}
		m, err := wire.DecodeMethod(f.Payload)
		if err != nil {
			return nil, err
		}
		switch m := m.(type) {
		case *wire.ConnectionClose:
			return nil, &amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true}
		case *wire.ChannelClose:
			return nil, &amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true}
		}
		if m.MethodName() != name || f.Channel != ch {
			return nil, fmt.Errorf("want %s on channel %d, got %s on channel %d", name, ch, m.MethodName(), f.Channel)
		}
		return m, nil
	}
}

// confirmSelect puts the channel in confirm mode. It must be called before
// start.
func (c *wireConn) confirmSelect() error {
	c.wmu.Lock()
	c.wbuf = wire.AppendMethodFrame(c.wbuf, wireChannel, &wire.ConfirmSelect{})
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	_, err = c.expect(wireChannel, "confirm.select-ok")
	return err
}

// start starts the reader goroutine; after it, only the reader reads.
func (c *wireConn) start() { go c.read() }

func (c *wireConn) setErr(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
		close(c.errCh)
	}
	c.errMu.Unlock()
}

// Err returns the error that ended the connection, if any.
func (c *wireConn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *wireConn) read() {
	defer close(c.readDone)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !c.closing.Load() {
				c.setErr(&amqp.Error{Code: amqp.FrameError, Reason: err.Error()})
			}
			return
		}
		switch f.Type {
		case wire.FrameHeartbeat, wire.FrameHeader, wire.FrameBody:
			continue // a basic.return's content: nothing in it is needed
		}
		m, err := wire.DecodeMethod(f.Payload)
		if err != nil {
			c.setErr(&amqp.Error{Code: amqp.FrameError, Reason: err.Error()})
			_ = c.nc.Close()
			return
		}
		switch m := m.(type) {
		case *wire.BasicAck:
			if c.onConfirm != nil {
				c.onConfirm(m.DeliveryTag, m.Multiple, true)
			}
		case *wire.BasicNack:
			if c.onConfirm != nil {
				c.onConfirm(m.DeliveryTag, m.Multiple, false)
			}
		case *wire.BasicReturn:
			if c.onReturn != nil {
				c.onReturn()
			}
		case *wire.ChannelClose:
			c.setErr(&amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true})
			c.send(func(b []byte) []byte { return wire.AppendMethodFrame(b, wireChannel, &wire.ChannelCloseOk{}) })
		case *wire.ConnectionClose:
			c.setErr(&amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true})
			c.send(func(b []byte) []byte { return wire.AppendMethodFrame(b, 0, &wire.ConnectionCloseOk{}) })
			_ = c.nc.Close()
			return
		case *wire.ConnectionCloseOk:
			close(c.closeOk)
			return
		}
	}
}

// send appends a frame with app and flushes at once.
func (c *wireConn) send(app func([]byte) []byte) {
	c.wmu.Lock()
	c.wbuf = app(c.wbuf)
	_ = c.flushLocked()
	c.wmu.Unlock()
}

func (c *wireConn) heartbeats(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.hbStop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, c.lastWrite.Load())) >= every {
			c.send(wire.AppendHeartbeatFrame)
		}
	}
}

func (c *wireConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.wbuf)
	c.lastWrite.Store(time.Now().UnixNano())
	c.wbuf = c.wbuf[:0]
	if err != nil {
		err = &amqp.Error{Code: amqp.FrameError, Reason: err.Error()}
		if !c.closing.Load() {
			c.setErr(err)
		}
	}
	return err
}

// bufferedPublisher appends publishes to a wireConn's buffer and flushes it
// by the policy above. It is used by one goroutine (the producer's).
type bufferedPublisher struct {
	c          *wireConn
	exchange   string
	key        string
	mandatory  bool
	props      wire.Properties
	oldest     int64 // UnixNano of the oldest unflushed publish; 0 = buffer empty
	publishArg wire.BasicPublish
}

func newBufferedPublisher(c *wireConn, exchange, key string, mandatory, persistent bool) *bufferedPublisher {
	p := &bufferedPublisher{c: c, exchange: exchange, key: key, mandatory: mandatory}
	p.props.Flags = wire.FlagDeliveryMode
	p.props.DeliveryMode = 1
	if persistent {
		p.props.DeliveryMode = 2
	}
	p.publishArg = wire.BasicPublish{Exchange: exchange, RoutingKey: key, Mandatory: mandatory}
	return p
}

// publish appends one message; now is the caller's clock (UnixNano).
func (p *bufferedPublisher) publish(now int64, body []byte) error {
	c := p.c
	select {
	case <-c.errCh:
		return c.Err()
	default:
	}
	c.wmu.Lock()
	c.wbuf = wire.AppendMethodFrame(c.wbuf, wireChannel, &p.publishArg)
	c.wbuf = wire.AppendHeaderFrameProps(c.wbuf, wireChannel, uint64(len(body)), &p.props)
	c.wbuf = wire.AppendBodyFrames(c.wbuf, wireChannel, body, c.frameMax)
	if p.oldest == 0 {
		p.oldest = now
	}
	var err error
	if len(c.wbuf) >= flushBytes || now-p.oldest >= int64(flushAge) {
		err = c.flushLocked()
		p.oldest = 0
	}
	c.wmu.Unlock()
	return err
}

// flush writes what is buffered.
func (p *bufferedPublisher) flush() error {
	c := p.c
	c.wmu.Lock()
	err := c.flushLocked()
	p.oldest = 0
	c.wmu.Unlock()
	return err
}

// sendClose marks the connection closing and sends connection.close.
func (c *wireConn) sendClose() {
	c.closing.Store(true)
	close(c.hbStop)
	c.send(func(b []byte) []byte {
		return wire.AppendMethodFrame(b, 0, &wire.ConnectionClose{ReplyCode: 200, ReplyText: "Goodbye"})
	})
}

// closeDeadline closes the channel and the connection politely (close,
// close-ok), waiting until deadline for close-ok, then closes the socket.
func (c *wireConn) closeDeadline(deadline time.Time) error {
	var err error
	c.closeOnce.Do(func() {
		c.sendClose()
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-c.closeOk:
		case <-c.readDone:
		case <-t.C:
			err = errors.New("no connection.close-ok before the deadline")
		}
		_ = c.nc.Close()
	})
	return err
}

// call sends m on channel 1 and waits for the reply want; only before the
// connection's reader runs (setup).
func (c *wireConn) call(m wire.Method, want string) (wire.Method, error) {
	c.wmu.Lock()
	c.wbuf = wire.AppendMethodFrame(c.wbuf, wireChannel, m)
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.expect(wireChannel, want)
}

// closeReading closes a connection whose reader is the caller's (a
// buffered consumer's, once its loop has ended): it sends connection.close
// and reads until close-ok or deadline.
func (c *wireConn) closeReading(deadline time.Time) error {
	var err error
	c.closeOnce.Do(func() {
		c.sendClose()
		_ = c.nc.SetReadDeadline(deadline)
		for {
			f, rerr := c.fr.ReadFrame()
			if rerr != nil {
				err = rerr
				break
			}
			if f.Type == wire.FrameMethod && len(f.Payload) >= 4 &&
				binary.BigEndian.Uint16(f.Payload) == 10 && binary.BigEndian.Uint16(f.Payload[2:]) == 51 {
				break // connection.close-ok
			}
		}
		_ = c.nc.Close()
	})
	return err
}
