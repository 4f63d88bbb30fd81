package management

import (
	"testing"
	"unsafe"
)

// A followed queue's history is a fixed ring: its size is what a queue
// costs, whatever its traffic (README's management section quotes it).
func TestHistorySize(t *testing.T) {
	per := unsafe.Sizeof(queueHistory{})
	t.Logf("history per followed queue: %d bytes; at most %d queues: %d KB", per, maxQueueHistories, per*maxQueueHistories/1024)
	if per > 14<<10 {
		t.Errorf("a queue's history is %d bytes", per)
	}
}
