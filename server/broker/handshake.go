package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// handshakeTimeout bounds the whole opening handshake, as RabbitMQ's
// handshake_timeout does.
const handshakeTimeout = 10 * time.Second

var errHandshake = errors.New("handshake failed")

// handshake runs protocol header, start, tune and open. On failure it has
// already told the client what it could.
func (c *conn) handshake() error {
	_ = c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.nc.SetDeadline(time.Time{})

	var external []byte // the verified client certificate's subject, for EXTERNAL
	if tc, ok := c.nc.(TLSConn); ok {
		if err := tc.Handshake(); err != nil {
			if !errors.Is(err, io.EOF) { // a TCP health check says nothing
				c.logRefused("TLS handshake failed", "err", err)
			}
			return fmt.Errorf("%w: TLS: %v", errHandshake, err)
		}
		external = tc.VerifiedSubject()
	}

	var hdr [8]byte
	if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
		return err
	}
	if !bytes.Equal(hdr[:], amqp.ProtocolHeader) {
		// The spec's answer to a header we don't speak: ours, then close.
		n, _ := c.nc.Write(amqp.ProtocolHeader)
		c.sent(int64(n))
		c.logRefused("connection refused: bad protocol header", "header", fmt.Sprintf("%q", hdr[:]))
		return fmt.Errorf("%w: bad protocol header %q", errHandshake, hdr[:])
	}
	// Until tune-ok has settled frame_max, frames are capped at the
	// spec's minimum, as RabbitMQ does: an unauthenticated client must not
	// make us buffer a large frame.
	c.fr.SetMaxFrame(amqp.FrameMinSize)

	if err := c.writeNow(connectionStartFrame(external != nil)); err != nil {
		return err
	}

	startOk, err := expectMethod[*amqp.ConnectionStartOk](c)
	if err != nil {
		return err
	}
	authFailClose := false
	if caps, ok := startOk.ClientProperties["capabilities"].(amqp.Table); ok {
		c.capBlocked = caps["connection.blocked"] == true
		c.capCancel = caps["consumer_cancel_notify"] == true
		authFailClose = caps["authentication_failure_close"] == true
	}
	var user, why string
	if startOk.Mechanism == "EXTERNAL" && external != nil {
		// The response is ignored, as RabbitMQ ignores it.
		user, why = c.srv.externalLogin(external)
	} else {
		var pass string
		user, pass, err = parseSASL(startOk.Mechanism, []byte(startOk.Response))
		if err != nil {
			return c.handshakeClose(protoErr(amqp.CommandInvalid, startOk, "%v", err))
		}
		if !c.srv.authenticate(user, pass) {
			why = "invalid credentials"
		}
	}
	if why == "" && !c.srv.loopbackAllowed(user, c.nc.RemoteAddr()) {
		why = fmt.Sprintf("user '%s' can only connect via localhost", user)
	}
	if why != "" {
		if n, ok := c.srv.loginLog.allow(); ok {
			c.logger.Info("login refused", "user", user, "mechanism", startOk.Mechanism, "reason", why, "suppressed", n)
		}
		e := protoErr(amqp.AccessRefused, startOk,
			"Login was refused using authentication mechanism %s. For details see the broker logfile.", startOk.Mechanism)
		if authFailClose {
			return c.handshakeClose(e)
		}
		return fmt.Errorf("%w: %s", errHandshake, e.text)
	}
	c.user = user

	cfg := &c.srv.cfg
	tune := &amqp.ConnectionTune{ChannelMax: cfg.ChannelMax, FrameMax: cfg.FrameMax, Heartbeat: cfg.Heartbeat}
	if err := c.writeNow(amqp.AppendMethodFrame(nil, 0, tune)); err != nil {
		return err
	}
	tuneOk, err := expectMethod[*amqp.ConnectionTuneOk](c)
	if err != nil {
		return err
	}
	switch {
	case tuneOk.FrameMax != 0 && tuneOk.FrameMax < amqp.FrameMinSize:
		return c.handshakeClose(protoErr(amqp.NotAllowed, tuneOk, "frame_max=%d < %d min size", tuneOk.FrameMax, amqp.FrameMinSize))
	case cfg.FrameMax != 0 && tuneOk.FrameMax > cfg.FrameMax:
		return c.handshakeClose(protoErr(amqp.NotAllowed, tuneOk, "frame_max=%d > %d max size", tuneOk.FrameMax, cfg.FrameMax))
	case cfg.ChannelMax != 0 && tuneOk.ChannelMax > cfg.ChannelMax:
		return c.handshakeClose(protoErr(amqp.NotAllowed, tuneOk, "channel_max=%d > %d max", tuneOk.ChannelMax, cfg.ChannelMax))
	}
	c.frameMax = tuneOk.FrameMax
	if c.frameMax == 0 {
		c.frameMax = cfg.FrameMax
	}
	c.channelMax = tuneOk.ChannelMax
	if c.channelMax == 0 {
		c.channelMax = cfg.ChannelMax
	}
	c.heartbeat = time.Duration(tuneOk.Heartbeat) * time.Second
	c.fr.SetMaxFrame(c.frameMax)

	open, err := expectMethod[*amqp.ConnectionOpen](c)
	if err != nil {
		return err
	}
	v := c.srv.vhost(open.VirtualHost)
	if v == nil {
		return c.handshakeClose(protoErr(amqp.NotAllowed, open, "vhost %s not found", open.VirtualHost))
	}
	if !c.srv.permitted(user, open.VirtualHost) {
		return c.handshakeClose(protoErr(amqp.NotAllowed, open, "access to vhost '%s' refused for user '%s'", open.VirtualHost, user))
	}
	if e := c.srv.admitConnection(c, user, v.name); e != nil {
		return c.handshakeClose(e)
	}
	c.vhost = v
	c.publishInfo(startOk)
	if err := c.writeNow(amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionOpenOk{})); err != nil {
		return err
	}
	c.logger = c.logger.With("user", user, "vhost", v.name)
	c.logger.Info("connection opened")
	if reason, on := c.srv.alarmState(); on {
		c.setBlockedInitial(reason)
	}
	return nil
}

// logRefused logs a refused handshake at info level, at most once a second
// across the server: refusals cost an attacker nothing.
func (c *conn) logRefused(msg string, args ...any) {
	if n, ok := c.srv.refuseLog.allow(); ok {
		c.logger.Info(msg, append(args, "suppressed", n)...)
	}
}

// setBlockedInitial records that a client connecting during an alarm must
// be told at once (the writer is not running yet, so just queue it).
func (c *conn) setBlockedInitial(reason string) {
	if !c.capBlocked {
		return
	}
	c.outMu.Lock()
	c.blocked = true
	c.appendMethodLocked(0, &amqp.ConnectionBlocked{Reason: reason})
	c.outMu.Unlock()
	c.kick() // the writer starts with the token and sends it at once
}

func (c *conn) writeNow(b []byte) error {
	n, err := c.nc.Write(b)
	c.sent(int64(n))
	return err
}

// connectionStartFrame is connection.start, one of two frames: with
// EXTERNAL among the mechanisms for a TLS connection whose client
// certificate was verified, without it for every other. Each is encoded
// once, since its table costs more than the rest of a handshake (and
// clients that reconnect in a loop pay it each time).
func connectionStartFrame(external bool) []byte {
	if external {
		return startWithExternal()
	}
	return startPlain()
}

var (
	startPlain        = sync.OnceValue(func() []byte { return startFrame("PLAIN AMQPLAIN") })
	startWithExternal = sync.OnceValue(func() []byte { return startFrame("PLAIN AMQPLAIN EXTERNAL") })
)

func startFrame(mechanisms string) []byte {
	return amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: serverProperties(),
		Mechanisms:       mechanisms,
		Locales:          "en_US",
	})
}

// handshakeClose sends connection.close during the handshake and waits
// briefly for close-ok before giving up on the client.
func (c *conn) handshakeClose(e *amqpError) error {
	c.logRefused("connection refused", "code", e.code, "text", e.text)
	_ = c.writeNow(amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionClose{
		ReplyCode: e.code, ReplyText: e.text, FailingClassID: e.classID, FailingMethodID: e.methodID}))
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break
		}
		if f.Type == amqp.FrameMethod && f.Channel == 0 {
			if m, err := amqp.DecodeMethod(f.Payload); err == nil {
				if _, ok := m.(*amqp.ConnectionCloseOk); ok {
					break
				}
			}
		}
	}
	return fmt.Errorf("%w: %s", errHandshake, e.text)
}

// expectMethod reads the next frame, which must be method T on channel 0.
func expectMethod[T amqp.Method](c *conn) (T, error) {
	var zero T
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var fe *amqp.FrameError
			if errors.As(err, &fe) {
				return zero, c.handshakeClose(&amqpError{code: fe.Code, text: fe.Text, hard: true})
			}
			return zero, err
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			return zero, c.handshakeClose(protoErr(amqp.UnexpectedFrame, nil, "expected method frame on channel 0 during handshake"))
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return zero, c.handshakeClose(decodeFailure(err))
		}
		if t, ok := m.(T); ok {
			return t, nil
		}
		if _, ok := m.(*amqp.ConnectionClose); ok {
			_ = c.writeNow(amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionCloseOk{}))
			return zero, fmt.Errorf("%w: client closed during handshake", errHandshake)
		}
		return zero, c.handshakeClose(protoErr(amqp.CommandInvalid, m, "expected %s, got %s", zero.MethodName(), m.MethodName()))
	}
}

// parseSASL extracts credentials from a PLAIN or AMQPLAIN response.
func parseSASL(mechanism string, resp []byte) (user, pass string, err error) {
	switch mechanism {
	case "PLAIN":
		// [authzid] NUL authcid NUL passwd
		parts := bytes.SplitN(resp, []byte{0}, 3)
		if len(parts) != 3 {
			return "", "", errors.New("malformed PLAIN response")
		}
		return string(parts[1]), string(parts[2]), nil
	case "AMQPLAIN":
		// A field table without its length prefix.
		buf := binary.BigEndian.AppendUint32(nil, uint32(len(resp)))
		t, _, err := amqp.ReadTable(append(buf, resp...))
		if err != nil {
			return "", "", fmt.Errorf("malformed AMQPLAIN response: %v", err)
		}
		u, _ := t["LOGIN"].(string)
		p, _ := t["PASSWORD"].(string)
		return u, p, nil
	case "EXTERNAL":
		// Known, but not offered: a plain connection, or TLS without a
		// verified client certificate (RabbitMQ's words for a mechanism
		// it has but did not offer).
		return "", "", fmt.Errorf("invalid authentication mechanism '%s'", mechanism)
	}
	return "", "", fmt.Errorf("unknown authentication mechanism '%s'", mechanism)
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
