package servertest

import (
	"strings"
	"sync"
)

// LogBuffer collects log lines written from many goroutines (a server's
// slog handler, a child process's stdout and stderr). Safe for concurrent
// use.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder // (mu)
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether s was written (within one Write or across).
func (l *LogBuffer) Contains(s string) bool { return strings.Contains(l.String(), s) }
