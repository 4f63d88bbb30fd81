// Package listener holds what every accept loop of the server shares: the
// broker's AMQP listeners and the cluster's inter-node listener retry the
// same accept errors, so that no client or peer can stop a listener by
// using up descriptors.
package listener

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Temporary reports whether accept may succeed when retried: out of
// descriptors or buffers, or a connection aborted while queued.
func Temporary(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED,
		syscall.ENOBUFS, syscall.ENOMEM, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// NextBackoff is the wait before the next retry after one of prev (0 on
// the first failure): from 5 ms, doubling, at most a second, as net/http
// waits.
func NextBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, 5*time.Millisecond), time.Second)
}
