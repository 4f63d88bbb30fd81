package broker

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The bound is always durable before a delivery it covers, and the
// checkpoint interval (storage.offsetcheckpointinterval) sets how soon it
// adapts to the delivery rate.
func TestDeliveredBound(t *testing.T) {
	defs, err := openDefinitions(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer defs.close()
	db := defs.db
	d := newDeliveredMark(defs, 0, 20*time.Millisecond, nil)
	defer d.close()

	if err := d.covered(100); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadDelivered(db); got < 100 {
		t.Fatalf("delivery of id 100 went out with a durable bound of %d", got)
	}
	// Deliveries race ahead by 10,000 ids; the next checkpoints raise the
	// bound ahead of that rate without waiting for a delivery to force it.
	if err := d.covered(10_000); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := loadDelivered(db)
		if err != nil {
			t.Fatal(err)
		}
		if got >= 10_000+2*(10_000-100) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bound %d never got the rate's headroom", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The definitions store runs no compactor goroutine (their polling was
// most of an idle broker's CPU): the writes that leave level 0 with
// compactAtL0 tables compact it, and everything written stays readable,
// also after a reopen.
func TestDefinitionsCompactWithoutCompactors(t *testing.T) {
	dir := t.TempDir()
	d, err := openDefinitions(dir)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'v'}, 512<<10)
	// 8 MiB memtables: 48 MiB of writes flush level-0 tables past
	// compactAtL0 more than once.
	const n = 96
	for i := range n {
		if err := d.update(func(txn *badger.Txn) error { return txn.Set([]byte(fmt.Sprint("k", i)), val) }); err != nil {
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
	check := func(d *definitions) {
		t.Helper()
		if err := d.db.View(func(txn *badger.Txn) error {
			for i := range n {
				it, err := txn.Get([]byte(fmt.Sprint("k", i)))
				if err != nil {
					return fmt.Errorf("k%d: %w", i, err)
				}
				if v, err := it.ValueCopy(nil); err != nil || !bytes.Equal(v, val) {
					return fmt.Errorf("k%d: %d bytes, %v", i, len(v), err)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check(d)
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	if d, err = openDefinitions(dir); err != nil {
		t.Fatal(err)
	}
	defer d.close()
	check(d)
}
