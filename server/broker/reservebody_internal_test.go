package broker

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// A body's buffer grows in large steps but only with what has arrived
// (issue 8, item 2): its capacity never exceeds 8 times the bytes
// received or the bytes received plus 2 MiB (the frame being read), never
// the declared size on the header's word; a 1 MiB body in 128 KiB frames
// takes one allocation, a 64 KiB one in one frame exactly its size, and
// whatever the frame sizes the body comes out intact.
func TestReserveBodyBounds(t *testing.T) {
	props := []byte{0x80, 0x00, 4, 't', 'e', 'x', 't'}
	grow := func(declared uint64, frames []int) (allocs int, body []byte) {
		t.Helper()
		ch := &channel{}
		ch.startContent(props, declared, 0)
		var want []byte
		for i, n := range frames {
			received := uint64(len(ch.body))
			before := cap(ch.body)
			p := bytes.Repeat([]byte{byte(i)}, n)
			if i%2 == 0 {
				ch.appendBody(p) // copied from the frame reader's buffer
			} else {
				// BodyBuffer's path: room reserved, the payload
				// read into place, then handed back.
				ch.reserveBody(n)
				m := len(ch.body)
				copy(ch.body[m:m+n], p)
				ch.appendBody(ch.body[m : m+n])
			}
			want = append(want, p...)
			if cap(ch.body) != before {
				allocs++
				if c := uint64(cap(ch.body)); c > max(8*received, received+2<<20) && c > uint64(len(ch.body)) {
					t.Fatalf("frame %d: capacity %d after %d bytes received (declared %d)", i, c, received, declared)
				}
			}
			if !bytes.Equal(ch.props, props) {
				t.Fatalf("frame %d: properties changed", i)
			}
		}
		if !bytes.Equal(ch.body, want) {
			t.Fatalf("body of %d bytes differs", len(want))
		}
		return allocs, ch.body
	}
	frames := func(total, size int) []int {
		var fs []int
		for ; total > 0; total -= size {
			fs = append(fs, min(size, total))
		}
		return fs
	}
	if a, _ := grow(1<<20, frames(1<<20, 131064)); a != 1 {
		t.Errorf("1 MiB in 128 KiB frames: %d allocations, want 1", a)
	}
	if a, b := grow(64<<10, frames(64<<10, 64<<10)); a != 1 || cap(b) != 64<<10 {
		t.Errorf("64 KiB in one frame: %d allocations, capacity %d", a, cap(b))
	}
	// A hostile header: 128 MiB declared, a few small frames sent.
	if _, b := grow(128<<20, []int{1, 7, 100}); cap(b) > 2<<20 {
		t.Errorf("128 MiB declared, 108 bytes sent: capacity %d", cap(b))
	}
	rng := rand.New(rand.NewPCG(8, 2))
	for range 20 {
		total := 1 + rng.IntN(3<<20)
		var fs []int
		for left := total; left > 0; {
			n := min(left, 1+rng.IntN(256<<10))
			fs = append(fs, n)
			left -= n
		}
		grow(uint64(total), fs)
	}
}
