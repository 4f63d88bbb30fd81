package broker

import (
	"sync"
	"syscall"
	"time"
)

// fdReserve is how many file descriptors the derived connection limit
// leaves for everything that is not a client socket: the message log's
// segments, Badger's tables and value logs, the listeners, telemetry and
// log files.
const fdReserve = 128

// connectionsForFileLimit derives the default connection limit from the
// process's open-file limit, so that clients run out of connection slots
// before the broker runs out of descriptors for its own files.
func connectionsForFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return -1
	}
	n := int64(rl.Cur) - fdReserve
	if half := int64(rl.Cur) / 2; n < half {
		// A tiny limit still leaves the broker half of it.
		n = half
	}
	return int(max(n, 1))
}

// logLimiter lets a log line through at most once a second and counts the
// ones it held back, so a flood of bad clients cannot flood the log.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now and how many lines were held back since
// the last one that was let through.
func (l *logLimiter) allow() (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return 0, false
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	return n, true
}
