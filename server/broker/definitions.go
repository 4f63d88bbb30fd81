package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
	"github.com/amqp-go/amqp-go/shared/wal"
	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// definitions persists durable exchanges, queues and bindings in Badger, so
// they survive restarts. Every write is synchronous: declarations are rare
// and a declare-ok must mean the definition is on disk.
//
// Keys are sequences of length-prefixed parts (names and routing keys may
// hold any byte):
//
//	x VHOST NAME                         exchange: a field table
//	q VHOST NAME                         queue: a field table with its id
//	b VHOST SOURCE KIND DEST KEY ARGS    binding (KIND q or x; ARGS encoded)
//	m next-queue-id                      the next durable queue id
//	s security                           users, vhosts, permissions, limits:
//	                                     RabbitMQ's definitions JSON (security.Store)
//
// A binding's key is rebuilt from the binding in memory, so deleting a
// queue or exchange deletes exactly the keys of its own bindings (which the
// vhost's destination index lists) without iterating the others.
type definitions struct {
	db *badger.DB
	// compacting is set while a compaction runs (compactIfNeeded);
	// close waits for it.
	compacting  atomic.Bool
	compactions sync.WaitGroup
}

// openDefinitions opens the store in dir. Badger creates its files 0666
// less the umask and has no option for another mode, so dir is made
// wal.DirMode with a default ACL that makes what Badger creates in it
// wal.FileMode, and what is already there is given wal.FileMode after the
// open. Where the file system has no ACLs, files Badger creates later (new
// tables, value-log files) keep the umask's mode, inside a directory only
// the owner can enter.
func openDefinitions(dir string) (*definitions, error) {
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
		WithMemTableSize(8 << 20).
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
	d := &definitions{db: db}
	d.compactIfNeeded() // tables left by a server without this rule
	return d, nil
}

func (d *definitions) close() error {
	d.compactions.Wait()
	return d.db.Close()
}

// compactAtL0 is the number of level-0 tables (one per memtable flush)
// that starts a compaction: well below Badger's write stall at 15
// (NumLevelZeroTablesStall), and more than NumLevelZeroTables, below which
// Flatten leaves a store that is all in level 0 as it is.
const compactAtL0 = 4

// update is db.Update followed by the compaction check.
func (d *definitions) update(fn func(txn *badger.Txn) error) error {
	err := d.db.Update(fn)
	d.compactIfNeeded()
	return err
}

// compactIfNeeded starts a compaction of the whole store (Flatten), in a
// goroutine of its own and one at a time, once level 0 holds
// compactAtL0 tables. Every write to the store calls it after its
// commit; it costs a look at the level sizes.
func (d *definitions) compactIfNeeded() {
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

func key(parts ...string) []byte {
	var k []byte
	for _, p := range parts {
		k = binary.AppendUvarint(k, uint64(len(p)))
		k = append(k, p...)
	}
	return k
}

// splitKey reverses key.
func splitKey(k []byte) ([]string, error) {
	var parts []string
	for len(k) > 0 {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < n {
			return nil, errors.New("malformed key")
		}
		parts = append(parts, string(k[w:w+int(n)]))
		k = k[w+int(n):]
	}
	return parts, nil
}

// nextQueueID allocates a durable queue id; ids are never reused, so log
// records of a deleted queue can never be mistaken for a new one's.
func (d *definitions) nextQueueID() (uint64, error) {
	var id uint64
	err := d.update(func(txn *badger.Txn) error {
		k := key("m", "next-queue-id")
		id = 1
		if it, err := txn.Get(k); err == nil {
			if err := it.Value(func(v []byte) error {
				if len(v) != 8 {
					return errors.New("corrupt next-queue-id")
				}
				id = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(k, binary.BigEndian.AppendUint64(nil, id+1))
	})
	return id, err
}

func (d *definitions) put(k []byte, t amqp.Table) error {
	v := amqp.AppendTable(nil, t)
	return d.update(func(txn *badger.Txn) error { return txn.Set(k, v) })
}

func (d *definitions) putExchange(vhost string, x *Exchange) error {
	t := amqp.Table{
		"type": x.Kind, "durable": x.Durable, "auto_delete": x.AutoDelete, "internal": x.Internal,
		"arguments": tableOrEmpty(x.Args),
	}
	if id := x.delayedID(); id != 0 {
		t["id"] = int64(id)
	}
	return d.put(key("x", vhost, x.Name), t)
}

func (d *definitions) putQueue(vhost string, q *Queue) error {
	return d.put(key("q", vhost, q.Name), amqp.Table{
		"id": int64(q.id), "auto_delete": q.AutoDelete, "arguments": tableOrEmpty(q.Args),
	})
}

func bindingKey_(vhost, source string, b *binding) []byte {
	kind, dest := "q", ""
	if b.q != nil {
		dest = b.q.Name
	} else {
		kind, dest = "x", b.x.Name
	}
	return key("b", vhost, source, kind, dest, b.key, b.argsKey)
}

func (d *definitions) putBinding(vhost, source string, b *binding) error {
	return d.put(bindingKey_(vhost, source, b), amqp.Table{"arguments": tableOrEmpty(b.args)})
}

// deleteKeys removes keys in one transaction, or in several, in order,
// when one cannot hold them all.
func (d *definitions) deleteKeys(keys ...[]byte) error {
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

// deleteWithBindings removes the exchange or queue definition under k and
// the stored ones among bs, the bindings that went with it. The definition
// goes first: should a crash split a huge delete, what is left are
// bindings whose end is missing, which recovery drops.
func (d *definitions) deleteWithBindings(k []byte, vhost string, bs []*binding) error {
	keys := [][]byte{k}
	for _, b := range bs {
		if durableBinding(b.src, b) {
			keys = append(keys, bindingKey_(vhost, b.src.Name, b))
		}
	}
	return d.deleteKeys(keys...)
}

// deleteStoredBinding removes a binding read back by load (its parts).
func (d *definitions) deleteStoredBinding(def storedDef) error {
	return d.deleteKeys(key(append([]string{"b"}, def.parts...)...))
}

// storedDef is one definition read back at start-up.
type storedDef struct {
	kind  byte // 'x', 'q' or 'b'
	parts []string
	t     amqp.Table
}

// load reads every definition, exchanges and queues before bindings.
func (d *definitions) load() ([]storedDef, error) {
	var out, bindings []storedDef
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			parts, err := splitKey(k)
			if err != nil {
				return fmt.Errorf("definition key %q: %w", k, err)
			}
			if len(parts) < 2 || parts[0] == "m" || parts[0] == "s" {
				continue
			}
			var t amqp.Table
			if err := it.Item().Value(func(v []byte) error {
				var err error
				t, _, err = amqp.ReadTable(v)
				return err
			}); err != nil {
				return fmt.Errorf("definition %q: %w", k, err)
			}
			def := storedDef{kind: parts[0][0], parts: parts[1:], t: t}
			if def.kind == 'b' {
				if len(parts) != 7 {
					return fmt.Errorf("definition %q: malformed binding key", k)
				}
				bindings = append(bindings, def)
			} else {
				if len(parts) != 3 {
					return fmt.Errorf("definition %q: malformed key", k)
				}
				out = append(out, def)
			}
		}
		return nil
	})
	return append(out, bindings...), err
}

func tableOrEmpty(t amqp.Table) amqp.Table {
	if t == nil {
		return amqp.Table{}
	}
	return t
}

// securityKey holds the security store's state, written whole at each
// change (they are rare and small).
var securityKey = key("s", "security")

// putSecurity stores the security state (the security store's persister).
func (d *definitions) putSecurity(sd *security.Definitions) error {
	v, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	return d.update(func(txn *badger.Txn) error { return txn.Set(securityKey, v) })
}

// getSecurity reads the stored security state; found is false on a first
// start.
func (d *definitions) getSecurity() (sd *security.Definitions, found bool, err error) {
	err = d.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(securityKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			sd, err = security.ReadDefinitions(bytes.NewReader(v))
			found = err == nil
			return err
		})
	})
	return sd, found, err
}

// restoreSecurity makes cfg.Security what the store holds, or, on a first
// start, stores what the config seeded (so a default user is created once:
// deleted, it stays deleted); from then on every change is stored.
func (d *definitions) restoreSecurity(cfg *Config) error {
	cfg.securityDefaults()
	sd, found, err := d.getSecurity()
	if err != nil {
		return fmt.Errorf("definitions store: security: %w", err)
	}
	if found {
		if err := cfg.Security.Load(sd); err != nil {
			return fmt.Errorf("definitions store: security: %w", err)
		}
	} else if err := d.putSecurity(cfg.Security.Export()); err != nil {
		return fmt.Errorf("definitions store: security: %w", err)
	}
	return nil
}

// persistSecurity makes every later security change stored, except while
// the disk guard holds durable definitions back (the change is refused
// then, as a durable declare is).
func (s *Server) persistSecurity() {
	s.sec.SetPersister(func(sd *security.Definitions) error {
		if why := s.definitionsBlocked(); why != "" {
			return fmt.Errorf("definitions are not written while %s", why)
		}
		return s.defs.putSecurity(sd)
	})
}
