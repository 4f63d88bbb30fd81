package broker

import (
	"testing"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/queue"
)

// A queued message costs its core entry: a backlog of millions pays these
// bytes each, so the entry must not grow past 56 (the size before the
// queue package, with the handle's pointer and store reference).
func TestQueueEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(queue.Entry[qhandle]{}); n > 56 {
		t.Fatalf("a queue entry is %d bytes, want at most 56", n)
	}
}
