package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// DefinitionsStore is the durable key-value store Open keeps definitions
// in (package definitions' Store, which Config.OpenDefinitions opens).
// Every write must be on disk when it returns: a declare-ok means the
// definition is.
type DefinitionsStore interface {
	// Get returns the value under k; found is false if there is none.
	Get(k []byte) (v []byte, found bool, err error)
	// Set stores v under k.
	Set(k, v []byte) error
	// Modify replaces the value under k with what fn makes of it, in one
	// transaction.
	Modify(k []byte, fn func(v []byte, found bool) ([]byte, error)) error
	// Delete removes keys, in order, in as few transactions as hold them.
	Delete(keys ...[]byte) error
	// Each calls fn for every key with prefix, in key order; k and v are
	// valid only during the call.
	Each(prefix []byte, fn func(k, v []byte) error) error
	// Close closes the store.
	Close() error
}

// definitions persists durable exchanges, queues and bindings in a
// DefinitionsStore, so they survive restarts. Every write is synchronous:
// declarations are rare and a declare-ok must mean the definition is on
// disk.
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
	kv DefinitionsStore
}

// openDefinitions opens the store in dir with open.
func openDefinitions(open func(dir string) (DefinitionsStore, error), dir string) (*definitions, error) {
	if open == nil {
		return nil, errors.New("definitions store: no Config.OpenDefinitions to open it with")
	}
	kv, err := open(dir)
	if err != nil {
		return nil, err
	}
	return &definitions{kv: kv}, nil
}

func (d *definitions) close() error { return d.kv.Close() }

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
	err := d.kv.Modify(key("m", "next-queue-id"), func(v []byte, found bool) ([]byte, error) {
		id = 1
		if found {
			if len(v) != 8 {
				return nil, errors.New("corrupt next-queue-id")
			}
			id = binary.BigEndian.Uint64(v)
		}
		return binary.BigEndian.AppendUint64(nil, id+1), nil
	})
	return id, err
}

func (d *definitions) put(k []byte, t amqp.Table) error {
	return d.kv.Set(k, amqp.AppendTable(nil, t))
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

// putQueue stores q's definition; a replicated classic queue's, on its
// home node, with its home and the metadata log index of its declaration
// (recoverDef reads them back), which mark it as the cluster's rather than
// this node's own.
func (d *definitions) putQueue(vhost string, q *Queue) error {
	t := amqp.Table{"id": int64(q.id), "auto_delete": q.AutoDelete, "arguments": tableOrEmpty(q.Args)}
	if h := q.homeOf(); h != nil {
		t["home"], t["home_name"], t["home_index"] = int64(h.id), h.name, int64(h.index)
	}
	return d.put(key("q", vhost, q.Name), t)
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
func (d *definitions) deleteKeys(keys ...[]byte) error { return d.kv.Delete(keys...) }

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
	err := d.kv.Each(nil, func(k, v []byte) error {
		parts, err := splitKey(k)
		if err != nil {
			return fmt.Errorf("definition key %q: %w", k, err)
		}
		if len(parts) < 2 || parts[0] == "m" || parts[0] == "s" {
			return nil
		}
		t, _, err := amqp.ReadTable(v)
		if err != nil {
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
	return d.kv.Set(securityKey, v)
}

// getSecurity reads the stored security state; found is false on a first
// start.
func (d *definitions) getSecurity() (sd *security.Definitions, found bool, err error) {
	v, found, err := d.kv.Get(securityKey)
	if err != nil || !found {
		return nil, false, err
	}
	sd, err = security.ReadDefinitions(bytes.NewReader(v))
	found = err == nil
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
