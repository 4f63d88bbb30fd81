package management

import (
	"testing"
	"unsafe"
)

// A followed queue's history is a fixed ring: its size is what a queue
// costs, whatever its traffic (README's management section quotes it).
func TestHistorySize(t *testing.T) {
	per := unsafe.Sizeof(followedHistory{})
	t.Logf("history per followed object: %d bytes; at most %d queues: %d KB", per, maxFollowed, per*maxFollowed/1024)
	if per > 14<<10 {
		t.Errorf("a queue's history is %d bytes", per)
	}
}
