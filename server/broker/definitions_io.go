package broker

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// ExportDefinitions returns the server's definitions in RabbitMQ's format:
// the security store's part, and the durable exchanges (not the default or
// amq.* ones), the durable queues that are not exclusive, and the bindings
// between those (or from amq.* exchanges), as rabbitmqctl
// export_definitions lists them.
//
// Locking: each vhost's defsMu is held while it is read, so the export is
// consistent per vhost.
func (s *Server) ExportDefinitions() *security.Definitions {
	d := s.sec.Export()
	d.RabbitVersion, d.RabbitMQVersion = "3.10.8", "3.10.8"
	d.ProductName, d.ProductVersion = "AMQP-Go Server", Version
	vs := s.vhostSnapshot()
	slices.SortFunc(vs, func(a, b *VHost) int { return cmp.Compare(a.name, b.name) })
	for _, v := range vs {
		v.exportInto(d)
	}
	return d
}

func (v *VHost) exportInto(d *security.Definitions) {
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	for _, name := range sortedKeys(v.exchanges) {
		x := v.exchanges[name]
		if x.Durable && name != "" && !reservedName(name) {
			d.Exchanges = append(d.Exchanges, security.ExchangeDef{Name: name, VHost: v.name, Type: x.Kind,
				Durable: true, AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: jsonTable(x.Args)})
		}
		var bs []security.BindingDef
		for _, b := range x.bindingList() {
			if !durableBinding(x, b) {
				continue
			}
			bd := security.BindingDef{Source: name, VHost: v.name, RoutingKey: b.key, Arguments: jsonTable(b.args)}
			if b.q != nil {
				bd.Destination, bd.DestinationType = b.q.Name, "queue"
			} else {
				bd.Destination, bd.DestinationType = b.x.Name, "exchange"
			}
			bs = append(bs, bd)
		}
		slices.SortFunc(bs, func(a, b security.BindingDef) int {
			return cmp.Or(cmp.Compare(a.DestinationType, b.DestinationType), cmp.Compare(a.Destination, b.Destination),
				cmp.Compare(a.RoutingKey, b.RoutingKey))
		})
		d.Bindings = append(d.Bindings, bs...)
	}
	for _, name := range sortedKeys(v.queues) {
		q := v.queues[name]
		if q.id != 0 && !q.Exclusive {
			d.Queues = append(d.Queues, security.QueueDef{Name: name, VHost: v.name, Durable: true,
				AutoDelete: q.AutoDelete, Arguments: jsonTable(q.Args)})
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ImportDefinitions adds what d defines, as RabbitMQ's import does: the
// security part first (all or nothing), then exchanges, queues and
// bindings, each declared as a client would (an existing equivalent one is
// kept; one that is not equivalent fails the import with RabbitMQ's
// text). Policies and operator policies are checked first, stored with
// the vhost and applied to its queues and exchanges.
func (s *Server) ImportDefinitions(d *security.Definitions) error {
	if err := checkImportedPolicies(d); err != nil {
		return err
	}
	if err := s.sec.Import(d); err != nil {
		return err
	}
	defer s.reapplyAllPolicies()
	for _, x := range d.Exchanges {
		args, err := amqpTable(x.Arguments)
		if err != nil {
			return fmt.Errorf("exchanges: exchange '%s' in vhost '%s': %w", x.Name, x.VHost, err)
		}
		if err := s.importChange(x.VHost, "exchange", x.Name, DefChange{Kind: ExchangeDeclare, Exchange: x.Name,
			Type: x.Type, Durable: x.Durable, AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: args}); err != nil {
			return err
		}
	}
	for _, q := range d.Queues {
		args, err := amqpTable(q.Arguments)
		if err != nil {
			return fmt.Errorf("queues: queue '%s' in vhost '%s': %w", q.Name, q.VHost, err)
		}
		if err := s.importChange(q.VHost, "queue", q.Name, DefChange{Kind: QueueDeclare, Queue: q.Name,
			Durable: q.Durable, AutoDelete: q.AutoDelete, Arguments: args}); err != nil {
			return err
		}
	}
	for _, b := range d.Bindings {
		args, err := amqpTable(b.Arguments)
		if err != nil {
			return fmt.Errorf("bindings: binding from '%s' in vhost '%s': %w", b.Source, b.VHost, err)
		}
		what := fmt.Sprintf("from '%s' to %s '%s'", b.Source, b.DestinationType, b.Destination)
		if err := s.importChange(b.VHost, "binding", what, DefChange{Kind: Bind, Exchange: b.Source,
			Destination: b.Destination, ToExchange: b.DestinationType == "exchange", RoutingKey: b.RoutingKey,
			Arguments: args}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) importChange(vhost, kind, name string, ch DefChange) error {
	v := s.vhost(vhost)
	if v == nil {
		return fmt.Errorf("%ss: %s %s: vhost '%s' is not defined", kind, kind, name, vhost)
	}
	if _, err := v.Apply(ch); err != nil {
		return fmt.Errorf("%ss: %s %s in vhost '%s': %w", kind, kind, name, vhost, err)
	}
	return nil
}

// maxArgDepth bounds nesting in imported arguments.
const maxArgDepth = 16

// amqpTable converts JSON arguments (numbers as json.Number) to a field
// table: integers as long-long, other numbers as double, objects as
// tables, arrays as arrays; null is left out.
func amqpTable(m map[string]any) (amqp.Table, error) {
	if len(m) == 0 {
		return nil, nil
	}
	v, err := amqpValue(m, 0)
	if err != nil {
		return nil, err
	}
	return v.(amqp.Table), nil
}

func amqpValue(v any, depth int) (any, error) {
	if depth > maxArgDepth {
		return nil, fmt.Errorf("arguments nested deeper than %d", maxArgDepth)
	}
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return f, nil
	case float64:
		if x == float64(int64(x)) {
			return int64(x), nil
		}
		return x, nil
	case string, bool:
		return x, nil
	case map[string]any:
		t := amqp.Table{}
		for k, e := range x {
			if e == nil {
				continue
			}
			c, err := amqpValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if e == nil {
				continue
			}
			c, err := amqpValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported argument value %v", v)
}

// jsonTable converts a field table for a definitions file: byte strings
// as text, tables as objects; an empty table is {}.
func jsonTable(t amqp.Table) map[string]any {
	out := map[string]any{}
	for k, v := range t {
		out[k] = jsonValue(v)
	}
	return out
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case amqp.Table:
		return jsonTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}
