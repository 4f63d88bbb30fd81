package servertest

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// RawConn is a hand-driven AMQP client for tests that must send what no
// well-behaved client sends, or stop reading: frames are written and read
// one by one with the codec of shared/amqp.
type RawConn struct {
	T  testing.TB
	NC net.Conn
	FR *wire.FrameReader
}

// RawOptions shape RawDial and RawHandshake.
type RawOptions struct {
	// RecvBuffer, when positive, sets the socket's receive buffer
	// (SO_RCVBUF) before connecting, to make a client that stops reading
	// fill up quickly.
	RecvBuffer int
	// Heartbeat is sent in tune-ok (0: off).
	Heartbeat uint16
	// FrameMax is sent in tune-ok (0: the server's offer).
	FrameMax uint32
	// VHost overrides the URL's vhost.
	VHost string
	// Password overrides the URL's password.
	Password string
	// Capabilities go into client-properties.
	Capabilities wire.Table
	// NoOpen stops the handshake after tune-ok.
	NoOpen bool
}

// RawDial opens a TCP connection to rawurl's host without any handshake.
// It is closed when the test ends.
func RawDial(t testing.TB, rawurl string, o RawOptions) *RawConn {
	t.Helper()
	u, err := url.Parse(rawurl)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":5672"
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if o.RecvBuffer > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuffer)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	nc, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return &RawConn{T: t, NC: nc, FR: wire.NewFrameReader(nc, 1<<20)}
}

// RawHandshake dials and opens a connection with PLAIN and the URL's
// credentials; it returns connection.start. If the server answers
// start-ok with anything but connection.tune, it returns early and the
// caller reads what came.
func RawHandshake(t testing.TB, rawurl string, o RawOptions) (*RawConn, *wire.ConnectionStart) {
	t.Helper()
	r := RawDial(t, rawurl, o)
	u, _ := url.Parse(rawurl)
	user := u.User.Username()
	pass, _ := u.User.Password()
	if o.Password != "" {
		pass = o.Password
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	if o.VHost != "" {
		vhost = o.VHost
	}
	r.Write(wire.ProtocolHeader)
	_, m := r.ReadMethod()
	start, ok := m.(*wire.ConnectionStart)
	if !ok {
		t.Fatalf("want connection.start, got %s", m.MethodName())
	}
	props := wire.Table{"product": "RawConn"}
	if o.Capabilities != nil {
		props["capabilities"] = o.Capabilities
	}
	r.Send(0, &wire.ConnectionStartOk{ClientProperties: props, Mechanism: "PLAIN",
		Response: "\x00" + user + "\x00" + pass, Locale: "en_US"})
	_, m = r.ReadMethod()
	tune, ok := m.(*wire.ConnectionTune)
	if !ok {
		return r, start
	}
	frameMax := tune.FrameMax
	if o.FrameMax != 0 {
		frameMax = o.FrameMax
	}
	r.Send(0, &wire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: frameMax, Heartbeat: o.Heartbeat})
	if o.NoOpen {
		return r, start
	}
	r.Send(0, &wire.ConnectionOpen{VirtualHost: vhost})
	if o.VHost == "" {
		_, m = r.ReadMethod()
		if _, ok := m.(*wire.ConnectionOpenOk); !ok {
			t.Fatalf("want connection.open-ok, got %s %+v", m.MethodName(), m)
		}
	}
	return r, start
}

// Write sends raw bytes.
func (r *RawConn) Write(b []byte) {
	r.T.Helper()
	_ = r.NC.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.NC.Write(b); err != nil {
		r.T.Fatalf("raw write: %v", err)
	}
}

// Send sends one method frame.
func (r *RawConn) Send(ch uint16, m wire.Method) {
	r.T.Helper()
	r.Write(wire.AppendMethodFrame(nil, ch, m))
}

// Publish sends basic.publish with its content in one write.
func (r *RawConn) Publish(ch uint16, m *wire.BasicPublish, body []byte) {
	r.T.Helper()
	b := wire.AppendMethodFrame(nil, ch, m)
	b = wire.AppendHeaderFrameProps(b, ch, uint64(len(body)), &wire.Properties{})
	b = wire.AppendBodyFrames(b, ch, body, 4096)
	r.Write(b)
}

// ReadFrame reads one frame (its payload copied) within timeout.
func (r *RawConn) ReadFrame(timeout time.Duration) (wire.Frame, error) {
	_ = r.NC.SetReadDeadline(time.Now().Add(timeout))
	f, err := r.FR.ReadFrame()
	if err != nil {
		return f, err
	}
	f.Payload = append([]byte(nil), f.Payload...)
	return f, nil
}

// ReadMethod reads the next method frame, skipping heartbeats; any other
// frame fails the test.
func (r *RawConn) ReadMethod() (uint16, wire.Method) {
	r.T.Helper()
	for {
		f, err := r.ReadFrame(5 * time.Second)
		if err != nil {
			r.T.Fatalf("raw read: %v", err)
		}
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		if f.Type != wire.FrameMethod {
			r.T.Fatalf("want a method frame, got frame type %d", f.Type)
		}
		m, err := wire.DecodeMethod(f.Payload)
		if err != nil {
			r.T.Fatalf("decode: %v", err)
		}
		return f.Channel, m
	}
}

// OpenChannel opens channel id.
func (r *RawConn) OpenChannel(id uint16) {
	r.T.Helper()
	r.Send(id, &wire.ChannelOpen{})
	ch, m := r.ReadMethod()
	if _, ok := m.(*wire.ChannelOpenOk); !ok || ch != id {
		r.T.Fatalf("want channel.open-ok on %d, got %s on %d", id, m.MethodName(), ch)
	}
}

// ExpectEOF waits for the server to close the socket, ignoring frames.
func (r *RawConn) ExpectEOF(within time.Duration) {
	r.T.Helper()
	if err := r.WaitEOF(within); err != nil {
		r.T.Fatal(err)
	}
}

// WaitEOF is ExpectEOF that returns what went wrong instead of failing.
func (r *RawConn) WaitEOF(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, err := r.ReadFrame(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("socket still open after " + within.String())
		}
		if Closed(err) {
			return nil
		}
		return err
	}
}

// Closed reports whether a read error means the peer closed the socket.
func Closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET)
}
