package broker

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errPeerGone ends a connection whose client went away while the reader was
// not reading it (held by a resource alarm).
var errPeerGone = errors.New("client closed the connection while blocked by a resource alarm")

// waitAlarm holds the reader of a publishing connection until the raised
// alarm clears or the server stops the connection. It does not read the
// socket, but it watches it: a client that disconnects while held is torn
// down at once, so what it had buffered is released; otherwise the memory
// that raised the alarm could keep it raised for ever. It reports whether
// the client went away.
func (c *conn) waitAlarm(cleared <-chan struct{}) (peerGone bool) {
	var raw any = c.nc
	if tc, ok := raw.(TLSConn); ok {
		raw = tc.NetConn() // watched for a hang-up only: nothing is read
	}
	sc, ok := raw.(syscall.Conn)
	var rc syscall.RawConn
	if ok {
		var err error
		rc, err = sc.SyscallConn()
		ok = err == nil
	}
	if !ok {
		select {
		case <-cleared:
		case <-c.stop:
		}
		return false
	}
	// No heartbeat timeout while held: the client may not be read, as
	// RabbitMQ pauses its heartbeat monitor for blocked connections.
	_ = c.nc.SetReadDeadline(time.Time{})
	quit := make(chan struct{})
	woken := make(chan struct{})
	go func() {
		defer close(woken)
		select {
		case <-cleared:
		case <-c.stop:
		case <-quit:
			return
		}
		// Ends the wait below (a deadline in the past).
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}()
	_ = rc.Read(func(fd uintptr) bool {
		// Called when the socket turns readable (new data, FIN or RST);
		// returning false waits for the next such event without reading.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 &&
			fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
			peerGone = true
			return true
		}
		return false
	})
	close(quit)
	<-woken
	if c.forced.Load() {
		// forceClose's bound on the wait for close-ok still applies.
		_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	return peerGone
}
