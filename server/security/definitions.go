package security

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Definitions is RabbitMQ's definitions file (rabbitmqctl
// export_definitions, load_definitions): the security part, which Store
// imports and exports, and the exchanges, queues and bindings, which the
// broker does. Store keeps policies and operator policies (parameters of
// component operator_policy); the broker validates and applies them.
type Definitions struct {
	RabbitVersion    string               `json:"rabbit_version,omitempty"`
	RabbitMQVersion  string               `json:"rabbitmq_version,omitempty"`
	ProductName      string               `json:"product_name,omitempty"`
	ProductVersion   string               `json:"product_version,omitempty"`
	Users            []UserDef            `json:"users"`
	VHosts           []VHostDef           `json:"vhosts"`
	Permissions      []PermissionDef      `json:"permissions"`
	TopicPermissions []TopicPermissionDef `json:"topic_permissions"`
	Parameters       []ParameterDef       `json:"parameters"`
	GlobalParameters []ParameterDef       `json:"global_parameters"`
	Policies         []PolicyDef          `json:"policies"`
	Queues           []QueueDef           `json:"queues"`
	Exchanges        []ExchangeDef        `json:"exchanges"`
	Bindings         []BindingDef         `json:"bindings"`
}

// Tags reads a tag list as RabbitMQ writes it: a JSON array, or (older
// versions, and vhost metadata) one comma-separated string.
type Tags []string

// UnmarshalJSON accepts an array of strings or a comma-separated string.
func (t *Tags) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*t = append(*t, p)
			}
		}
		return nil
	}
	var a []string
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("tags: want an array of strings or a comma-separated string")
	}
	*t = a
	return nil
}

// UserDef is a user in a definitions file.
type UserDef struct {
	Name             string           `json:"name"`
	PasswordHash     string           `json:"password_hash"`
	HashingAlgorithm string           `json:"hashing_algorithm"`
	Tags             Tags             `json:"tags"`
	Limits           map[string]int64 `json:"limits"`
}

// VHostMetadata is a vhost's metadata as RabbitMQ 3.10 exports it.
type VHostMetadata struct {
	Description      string `json:"description"`
	Tags             Tags   `json:"tags"`
	DefaultQueueType string `json:"default_queue_type,omitempty"`
}

// VHostDef is a vhost in a definitions file. Older files carry the
// description and tags at the top level, newer ones in metadata; limits
// are read from the vhost-limits parameters.
type VHostDef struct {
	Name             string          `json:"name"`
	Description      string          `json:"description,omitempty"`
	Tags             Tags            `json:"tags,omitempty"`
	DefaultQueueType string          `json:"default_queue_type,omitempty"`
	Metadata         *VHostMetadata  `json:"metadata,omitempty"`
	Limits           json.RawMessage `json:"limits,omitempty"`
}

// PermissionDef is a permission in a definitions file.
type PermissionDef struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// TopicPermissionDef is a topic permission in a definitions file.
type TopicPermissionDef struct {
	User     string `json:"user"`
	VHost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Write    string `json:"write"`
	Read     string `json:"read"`
}

// ParameterDef is a runtime parameter; only components vhost-limits and
// operator_policy are understood (the others are kept out: nothing here
// would act on them).
type ParameterDef struct {
	VHost     string          `json:"vhost,omitempty"`
	Component string          `json:"component,omitempty"`
	Name      string          `json:"name"`
	Value     json.RawMessage `json:"value"`
}

// PolicyDef is a policy in a definitions file.
type PolicyDef struct {
	VHost      string         `json:"vhost"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Definition map[string]any `json:"definition"`
	Priority   int            `json:"priority"`
}

// QueueDef is a queue in a definitions file.
type QueueDef struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

// ExchangeDef is an exchange in a definitions file.
type ExchangeDef struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// BindingDef is a binding in a definitions file.
type BindingDef struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// maxDefinitionsSize bounds a definitions file read whole.
const maxDefinitionsSize = 256 << 20

// ReadDefinitions parses a definitions file. Numbers in arguments and
// policies stay json.Number, so integers are not turned into floats.
func ReadDefinitions(r io.Reader) (*Definitions, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxDefinitionsSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDefinitionsSize {
		return nil, fmt.Errorf("definitions larger than %d bytes", maxDefinitionsSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var d Definitions
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("definitions: %w", err)
	}
	return &d, nil
}

// WriteDefinitions writes d as indented JSON.
func WriteDefinitions(w io.Writer, d *Definitions) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// vhostLimitsComponent is the runtime parameter component of vhost limits.
const vhostLimitsComponent = "vhost-limits"

// operatorPolicyComponent is the runtime parameter component RabbitMQ
// exports operator policies under.
const operatorPolicyComponent = "operator_policy"

// operatorPolicyValue is an operator policy as a parameter's value.
type operatorPolicyValue struct {
	Pattern    string         `json:"pattern"`
	Definition map[string]any `json:"definition"`
	Priority   int            `json:"priority"`
	ApplyTo    string         `json:"apply-to"`
}

// OperatorPolicies are the operator policies among d's parameters.
func (d *Definitions) OperatorPolicies() ([]PolicyDef, error) {
	var out []PolicyDef
	for _, p := range d.Parameters {
		if p.Component != operatorPolicyComponent {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(p.Value))
		dec.UseNumber()
		var v operatorPolicyValue
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("parameters: operator policy '%s' of vhost '%s': %w", p.Name, p.VHost, err)
		}
		out = append(out, PolicyDef{VHost: p.VHost, Name: p.Name, Pattern: v.Pattern, ApplyTo: v.ApplyTo,
			Definition: v.Definition, Priority: v.Priority})
	}
	return out, nil
}

// definitions is the security part of st as a definitions file, sorted.
func (st *state) definitions() *Definitions {
	d := &Definitions{Users: []UserDef{}, VHosts: []VHostDef{}, Permissions: []PermissionDef{},
		TopicPermissions: []TopicPermissionDef{}, Parameters: []ParameterDef{}, GlobalParameters: []ParameterDef{},
		Policies: []PolicyDef{}, Queues: []QueueDef{}, Exchanges: []ExchangeDef{}, Bindings: []BindingDef{}}
	for _, name := range slices.Sorted(maps.Keys(st.users)) {
		u := st.users[name]
		d.Users = append(d.Users, UserDef{Name: u.Name, PasswordHash: u.PasswordHash,
			HashingAlgorithm: u.HashingAlgorithm, Tags: Tags(nonNil(u.Tags)), Limits: nonNilMap(u.Limits)})
	}
	for _, name := range slices.Sorted(maps.Keys(st.vhosts)) {
		v := st.vhosts[name]
		d.VHosts = append(d.VHosts, VHostDef{Name: v.Name, Metadata: &VHostMetadata{
			Description: v.Description, Tags: Tags(nonNil(v.Tags)), DefaultQueueType: v.DefaultQueueType}})
		if len(v.Limits) > 0 {
			val, _ := json.Marshal(v.Limits)
			d.Parameters = append(d.Parameters, ParameterDef{VHost: v.Name, Component: vhostLimitsComponent,
				Name: "limits", Value: val})
		}
		for _, p := range v.operatorPolicies {
			val, _ := json.Marshal(operatorPolicyValue{Pattern: p.Pattern, Definition: p.Definition,
				Priority: p.Priority, ApplyTo: p.ApplyTo})
			d.Parameters = append(d.Parameters, ParameterDef{VHost: v.Name, Component: operatorPolicyComponent,
				Name: p.Name, Value: val})
		}
		d.Policies = append(d.Policies, v.policies...)
	}
	for _, p := range st.perms {
		d.Permissions = append(d.Permissions, PermissionDef{User: p.User, VHost: p.VHost,
			Configure: p.Configure, Write: p.Write, Read: p.Read})
	}
	slices.SortFunc(d.Permissions, func(a, b PermissionDef) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.VHost, b.VHost))
	})
	for _, m := range st.topics {
		for _, t := range m {
			d.TopicPermissions = append(d.TopicPermissions, TopicPermissionDef{User: t.User, VHost: t.VHost,
				Exchange: t.Exchange, Write: t.Write, Read: t.Read})
		}
	}
	slices.SortFunc(d.TopicPermissions, func(a, b TopicPermissionDef) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.VHost, b.VHost), cmp.Compare(a.Exchange, b.Exchange))
	})
	return d
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// Export returns the security part of the store (users, vhosts,
// permissions, topic permissions, vhost limits, policies) as a
// definitions file; the caller adds exchanges, queues and bindings.
func (s *Store) Export() *Definitions { return s.cur.Load().definitions() }

// Import adds what d defines to the store, replacing entries of the same
// name and keeping others, as RabbitMQ's import does; all of it or, on an
// error, none. Exchanges, queues and bindings are the caller's.
func (s *Store) Import(d *Definitions) error {
	return s.update(func(st *state) error { return st.merge(d) })
}

// Load replaces the store's contents with d without calling the
// persister (start-up, from what the persister stored).
func (s *Store) Load(d *Definitions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &state{gen: s.cur.Load().gen + 1, users: map[string]*User{}, vhosts: map[string]*VHost{},
		perms: map[userVHost]*compiledPerm{}, topics: map[userVHost]map[string]*compiledTopic{}}
	if err := st.merge(d); err != nil {
		return err
	}
	s.cur.Store(st)
	return nil
}

// merge applies d to st (a private copy). Each entry is checked as the
// single-entry setters check it, naming the entry that is wrong.
func (st *state) merge(d *Definitions) error {
	for _, u := range d.Users {
		if u.Name == "" {
			return fmt.Errorf("users: a user has no name")
		}
		if err := CheckHash(u.HashingAlgorithm, u.PasswordHash); err != nil {
			return fmt.Errorf("users: user '%s': %w", u.Name, err)
		}
		alg := u.HashingAlgorithm
		if alg == "" {
			alg = HashSHA256
		}
		st.users[u.Name] = &User{Name: u.Name, PasswordHash: u.PasswordHash, HashingAlgorithm: alg,
			Tags: slices.Clone([]string(u.Tags)), Limits: limitsOnly(u.Limits, LimitMaxConnections, LimitMaxChannels)}
	}
	for _, v := range d.VHosts {
		if v.Name == "" {
			return fmt.Errorf("vhosts: a vhost has no name")
		}
		nv := &VHost{Name: v.Name, Description: v.Description, Tags: slices.Clone([]string(v.Tags)),
			DefaultQueueType: v.DefaultQueueType}
		if m := v.Metadata; m != nil {
			nv.Description = cmp.Or(m.Description, nv.Description)
			nv.DefaultQueueType = cmp.Or(m.DefaultQueueType, nv.DefaultQueueType)
			if len(m.Tags) > 0 {
				nv.Tags = slices.Clone([]string(m.Tags))
			}
		}
		if old := st.vhosts[v.Name]; old != nil {
			nv.Limits, nv.policies, nv.operatorPolicies = old.Limits, old.policies, old.operatorPolicies
		}
		st.vhosts[v.Name] = nv
	}
	for _, p := range d.Parameters {
		if p.Component != vhostLimitsComponent {
			continue
		}
		v := st.vhosts[p.VHost]
		if v == nil {
			return fmt.Errorf("parameters: vhost-limits for vhost '%s', which is not defined", p.VHost)
		}
		var lim map[string]int64
		if err := json.Unmarshal(p.Value, &lim); err != nil {
			return fmt.Errorf("parameters: vhost-limits of vhost '%s': want an object of integers", p.VHost)
		}
		c := *v
		c.Limits = limitsOnly(lim, LimitMaxConnections, LimitMaxQueues)
		st.vhosts[p.VHost] = &c
	}
	for _, p := range d.Permissions {
		if err := st.needUserVHost(p.User, p.VHost); err != nil {
			return fmt.Errorf("permissions: %w", err)
		}
		st.perms[userVHost{p.User, p.VHost}] = compilePermission(Permission(p))
	}
	for _, p := range d.TopicPermissions {
		if err := st.needUserVHost(p.User, p.VHost); err != nil {
			return fmt.Errorf("topic_permissions: %w", err)
		}
		st.putTopic(compileTopic(TopicPermission(p)))
	}
	ops, err := d.OperatorPolicies()
	if err != nil {
		return err
	}
	for i, list := range [][]PolicyDef{d.Policies, ops} {
		for _, p := range list {
			v := st.vhosts[p.VHost]
			if v == nil {
				return fmt.Errorf("policies: policy '%s' in vhost '%s', which is not defined", p.Name, p.VHost)
			}
			c := *v
			l := c.listOf(i == 1)
			*l = withPolicy(*l, p)
			st.vhosts[p.VHost] = &c
		}
	}
	return nil
}

// limitsOnly keeps the named limits of m.
func limitsOnly(m map[string]int64, names ...string) map[string]int64 {
	var out map[string]int64
	for k, v := range m {
		if slices.Contains(names, k) {
			if out == nil {
				out = map[string]int64{}
			}
			out[k] = v
		}
	}
	return out
}
