package definitions

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// The store runs no compactor goroutine (their polling was most of an idle
// broker's CPU): the writes that leave level 0 with compactAtL0 tables
// compact it, and everything written stays readable, also after a reopen.
func TestCompactWithoutCompactors(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Values below the value threshold, so they go through the memtable:
	// with 2 MiB memtables, 16 MiB of writes flush level-0 tables past
	// compactAtL0 more than once.
	val := bytes.Repeat([]byte{'v'}, 60<<10)
	const n = 280
	for i := range n {
		if err := d.Set([]byte(fmt.Sprint("k", i)), val); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for d.db.Levels()[0].NumTables >= compactAtL0 || d.compacting.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("level 0 still holds %d tables", d.db.Levels()[0].NumTables)
		}
		time.Sleep(10 * time.Millisecond)
	}
	compacted := false
	for _, l := range d.db.Levels()[1:] {
		compacted = compacted || l.NumTables > 0
	}
	if !compacted {
		t.Fatal("nothing below level 0: no compaction ran")
	}
	check := func(d *Store) {
		t.Helper()
		for i := range n {
			v, found, err := d.Get([]byte(fmt.Sprint("k", i)))
			if err != nil || !found || !bytes.Equal(v, val) {
				t.Fatalf("k%d: %d bytes, found %v, %v", i, len(v), found, err)
			}
		}
	}
	check(d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	check(d)
}

// More keys than one Badger transaction holds are deleted in several.
func TestDeleteSplitsLargeDeletes(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 100000
	keys := make([][]byte, n)
	wb := d.db.NewWriteBatch()
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "b/q%d", i)
		if err := wb.Set(keys[i], []byte{0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(keys...); err != nil {
		t.Fatal(err)
	}
	left := 0
	if err := d.Each([]byte("b/"), func(k, v []byte) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of %d keys left", left, n)
	}
}

// Modify reads and replaces a value in one transaction; an error from its
// function changes nothing.
func TestModify(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	k := []byte("n")
	inc := func(v []byte, found bool) ([]byte, error) {
		if !found {
			return []byte{1}, nil
		}
		return []byte{v[0] + 1}, nil
	}
	for range 3 {
		if err := d.Modify(k, inc); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Modify(k, func([]byte, bool) ([]byte, error) { return nil, fmt.Errorf("no") }); err == nil {
		t.Fatal("an error from the function is not returned")
	}
	if v, found, err := d.Get(k); err != nil || !found || !bytes.Equal(v, []byte{3}) {
		t.Fatalf("got %v %v %v, want [3] true", v, found, err)
	}
	if _, found, err := d.Get([]byte("none")); err != nil || found {
		t.Fatalf("a missing key: found %v, %v", found, err)
	}
}
