package broker

import (
	"testing"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/queue"
)

// A ready message costs what its level keeps of it: a backlog of millions
// pays these bytes each, so it must not grow past 48, what a queue entry
// was before the queue package: the handle's pointer and store reference
// (24) and the core's 24 (its seq is its place in the level's deque).
func TestQueueEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(queue.Queued[qhandle]{}); n > 48 {
		t.Fatalf("a queued message is %d bytes, want at most 48", n)
	}
}
