package broker

import (
	"testing"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/queue"
)

// A queued message costs its core entry: a backlog of millions pays these
// bytes each, so the entry must not grow past 56: the handle's pointer and
// store reference (24) and the core's 32. (Before the queue package it was
// 48, without the push time, body size and delivery count.)
func TestQueueEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(queue.Entry[qhandle]{}); n > 56 {
		t.Fatalf("a queue entry is %d bytes, want at most 56", n)
	}
}
