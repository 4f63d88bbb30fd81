// Package definitions is the Badger store a broker keeps its durable
// definitions in (exchanges, queues, bindings, the security state, the
// delivered bound): a key-value store whose every write is synchronous.
// What the keys and values mean is the broker's (broker.DefinitionsStore);
// this package knows Badger, its options and its compaction.
//
// It is a package of its own so that a binary that never opens a data
// directory does not link Badger: the fuzz targets' coverage counters
// include every linked package, and Badger with its dependencies was half
// of them.
package definitions

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/shared/wal"
	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Store is a Badger database of definitions. Its methods are safe for
// concurrent use.
type Store struct {
	db *badger.DB
	// compacting is set while a compaction runs (compactIfNeeded);
	// Close waits for it.
	compacting  atomic.Bool
	compactions sync.WaitGroup
}

// Open opens the store in dir. Badger creates its files 0666 less the
// umask and has no option for another mode, so dir is made wal.DirMode
// with a default ACL that makes what Badger creates in it wal.FileMode,
// and what is already there is given wal.FileMode after the open. Where
// the file system has no ACLs, files Badger creates later (new tables,
// value-log files) keep the umask's mode, inside a directory only the
// owner can enter.
func Open(dir string) (*Store, error) {
	if err := wal.MkdirPrivate(dir); err != nil {
		return nil, fmt.Errorf("definitions store %s: %w", dir, err)
	}
	if err := wal.PrivateFiles(dir); err != nil && !errors.Is(err, wal.ErrNoPrivateFiles) {
		return nil, fmt.Errorf("definitions store %s: %w", dir, err)
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(true).
		WithNumVersionsToKeep(1).
		WithMemTableSize(2 << 20).
		WithValueThreshold(64 << 10). // below the 15 % of a memtable that a batch may be
		WithValueLogFileSize(16 << 20).
		WithNumMemtables(2).
		// Idle cost (issue 12): each of Badger's compactors polls every
		// 50 ms, which was most of an idle broker's CPU, and a block
		// cache runs goroutines with their own tickers. So no
		// compactor runs: compactIfNeeded compacts after the writes
		// that leave level 0 with compactAtL0 tables. The store's few
		// blocks need no cache once uncompressed (Badger requires one
		// for compressed tables; tables written compressed before
		// still read).
		WithNumCompactors(0).
		WithNumLevelZeroTables(2). // Flatten compacts a level 0 of more tables than this
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("definitions store %s: %w", dir, err)
	}
	if err := wal.ChmodFiles(dir); err != nil {
		db.Close()
		return nil, fmt.Errorf("definitions store %s: %w", dir, err)
	}
	d := &Store{db: db}
	d.compactIfNeeded() // tables left by a server without this rule
	return d, nil
}

// Close waits for a compaction in progress and closes the database.
func (d *Store) Close() error {
	d.compactions.Wait()
	return d.db.Close()
}

// compactAtL0 is the number of level-0 tables (one per memtable flush)
// that starts a compaction: well below Badger's write stall at 15
// (NumLevelZeroTablesStall), and more than NumLevelZeroTables, below which
// Flatten leaves a store that is all in level 0 as it is.
const compactAtL0 = 4

// update is db.Update followed by the compaction check.
func (d *Store) update(fn func(txn *badger.Txn) error) error {
	err := d.db.Update(fn)
	d.compactIfNeeded()
	return err
}

// compactIfNeeded starts a compaction of the whole store (Flatten), in a
// goroutine of its own and one at a time, once level 0 holds
// compactAtL0 tables. Every write to the store calls it after its
// commit; it costs a look at the level sizes.
func (d *Store) compactIfNeeded() {
	if lv := d.db.Levels(); len(lv) == 0 || lv[0].NumTables < compactAtL0 || !d.compacting.CompareAndSwap(false, true) {
		return
	}
	d.compactions.Add(1)
	go func() {
		defer d.compactions.Done()
		defer d.compacting.Store(false)
		_ = d.db.Flatten(1) // a failure leaves level 0 as it was: the next write retries
	}()
}

// Get returns the value stored under k; found is false if there is none.
func (d *Store) Get(k []byte) (v []byte, found bool, err error) {
	err = d.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		found = err == nil
		return err
	})
	return v, found, err
}

// Set stores v under k.
func (d *Store) Set(k, v []byte) error {
	return d.update(func(txn *badger.Txn) error { return txn.Set(k, v) })
}

// Modify replaces the value under k with what fn makes of it (v and found
// as Get returns them), in one transaction; an error from fn leaves the
// value as it was.
func (d *Store) Modify(k []byte, fn func(v []byte, found bool) ([]byte, error)) error {
	return d.update(func(txn *badger.Txn) error {
		var v []byte
		found := false
		if it, err := txn.Get(k); err == nil {
			if v, err = it.ValueCopy(nil); err != nil {
				return err
			}
			found = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		nv, err := fn(v, found)
		if err != nil {
			return err
		}
		return txn.Set(k, nv)
	})
}

// Delete removes keys in one transaction, or in several, in order, when
// one cannot hold them all.
func (d *Store) Delete(keys ...[]byte) error {
	for len(keys) > 0 {
		txn := d.db.NewTransaction(true)
		n := 0
		for ; n < len(keys); n++ {
			if err := txn.Delete(keys[n]); err != nil {
				if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
					break
				}
				txn.Discard()
				return err
			}
		}
		err := txn.Commit()
		d.compactIfNeeded()
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Each calls fn for every key starting with prefix, in key order, with its
// value, stopping at the first error, which it returns. k and v are valid
// only during the call.
func (d *Store) Each(prefix []byte, fn func(k, v []byte) error) error {
	return d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}
