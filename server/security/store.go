package security

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// The user tags RabbitMQ knows. Tags only grant management access, except
// impersonator, which lets a publisher set another user's user_id.
const (
	TagAdministrator = "administrator"
	TagMonitoring    = "monitoring"
	TagManagement    = "management"
	TagPolicymaker   = "policymaker"
	TagImpersonator  = "impersonator"
)

// The limit names, as RabbitMQ's set_vhost_limits and set_user_limits
// spell them. An absent or negative limit is no limit.
const (
	LimitMaxConnections = "max-connections"
	LimitMaxQueues      = "max-queues"
	LimitMaxChannels    = "max-channels"
)

// User is one identity. A user with no PasswordHash logs in only by a
// mechanism that proves who it is otherwise (EXTERNAL).
type User struct {
	Name             string
	PasswordHash     string // base64(salt ‖ digest), RabbitMQ's format
	HashingAlgorithm string // one of the Hash constants; "" is HashSHA256
	Tags             []string
	// Limits holds LimitMaxConnections and LimitMaxChannels.
	Limits map[string]int64
}

// HasTag reports whether u carries tag.
func (u *User) HasTag(tag string) bool { return slices.Contains(u.Tags, tag) }

// VHost is a virtual host's metadata (the broker keeps what is in it).
type VHost struct {
	Name             string
	Description      string
	DefaultQueueType string
	Tags             []string
	// Limits holds LimitMaxConnections and LimitMaxQueues.
	Limits map[string]int64
	// policies and operatorPolicies, sorted by name; the broker
	// validates and applies them.
	policies, operatorPolicies []PolicyDef
}

// Permission is one user's configure, write and read patterns in one
// vhost: unanchored regular expressions on resource names.
type Permission struct {
	User, VHost            string
	Configure, Write, Read string
}

// TopicPermission is one user's write and read patterns on the routing
// keys of one topic exchange in one vhost.
type TopicPermission struct {
	User, VHost, Exchange string
	Write, Read           string
}

// Access is what a permission grants.
type Access uint8

// The three kinds of access.
const (
	Configure Access = iota
	Write
	Read
)

// String is the word RabbitMQ's refusals start with.
func (a Access) String() string {
	switch a {
	case Configure:
		return "configure"
	case Write:
		return "write"
	}
	return "read"
}

// ErrNotFound is returned for a user or vhost that does not exist.
var ErrNotFound = errors.New("not found")

type userVHost struct{ user, vhost string }

type compiledPerm struct {
	Permission
	re [3]*regexp.Regexp // by Access; nil: the pattern does not compile, which denies
}

type compiledTopic struct {
	TopicPermission
	// patterns by Write and Read, before {username} and {vhost} expansion.
	re [2]*regexp.Regexp
}

// state is one immutable version of the whole store: a change builds a
// new one, so checks read it without a lock.
type state struct {
	gen uint64
	// version is the cluster log index of the replicated change this
	// state comes from (Version); clone keeps it, as a copy about to be
	// changed is computed from it.
	version uint64
	users   map[string]*User
	vhosts  map[string]*VHost
	perms   map[userVHost]*compiledPerm
	topics  map[userVHost]map[string]*compiledTopic
}

func (s *state) clone() *state {
	n := &state{gen: s.gen + 1, version: s.version, users: maps.Clone(s.users), vhosts: maps.Clone(s.vhosts),
		perms: maps.Clone(s.perms), topics: maps.Clone(s.topics)}
	return n
}

// needUserVHost checks that a permission's user and vhost exist.
func (st *state) needUserVHost(user, vhost string) error {
	if st.users[user] == nil {
		return fmt.Errorf("user '%s': %w", user, ErrNotFound)
	}
	if st.vhosts[vhost] == nil {
		return fmt.Errorf("vhost '%s': %w", vhost, ErrNotFound)
	}
	return nil
}

// putTopic sets one topic permission (copying the map it changes: older
// states share it).
func (st *state) putTopic(ct *compiledTopic) {
	k := userVHost{ct.User, ct.VHost}
	m := maps.Clone(st.topics[k])
	if m == nil {
		m = map[string]*compiledTopic{}
	}
	m[ct.Exchange] = ct
	st.topics[k] = m
}

// dropPermissions removes the permissions and topic permissions whose
// user and vhost match.
func (st *state) dropPermissions(match func(userVHost) bool) {
	maps.DeleteFunc(st.perms, func(k userVHost, _ *compiledPerm) bool { return match(k) })
	maps.DeleteFunc(st.topics, func(k userVHost, _ map[string]*compiledTopic) bool { return match(k) })
}

// Store holds users, vhosts, permissions, topic permissions and limits.
//
// Locking: mu serialises changes (the persister runs under it, so what is
// stored is always the latest version); reads load the current version
// atomically and take no lock. Store calls nothing of its caller's with mu
// held except the persister, which must not call back into the Store.
type Store struct {
	mu      sync.Mutex
	cur     atomic.Pointer[state]
	persist func(*Definitions) error
	// usersDeleted is told, after mu is released, which users a change
	// removed (SetUsersDeletedHook).
	usersDeleted func(names []string)
	// replicate, when set, makes changes cluster-wide (SetReplicator).
	replicate Replicator
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(&state{gen: 1, users: map[string]*User{}, vhosts: map[string]*VHost{},
		perms: map[userVHost]*compiledPerm{}, topics: map[userVHost]map[string]*compiledTopic{}})
	return s
}

// SetPersister makes every later change call persist with the whole
// resulting security state (changes are rare); an error from it undoes the
// change and is returned to the caller.
func (s *Store) SetPersister(persist func(*Definitions) error) {
	s.mu.Lock()
	s.persist = persist
	s.mu.Unlock()
}

// SetUsersDeletedHook makes every later change that removes users
// (DeleteUser; Load, a start-up replacement, does not call it) call f
// with their names once the change is current, with the store's lock
// released: the broker closes their connections, as RabbitMQ does.
func (s *Store) SetUsersDeletedHook(f func(names []string)) {
	s.mu.Lock()
	s.usersDeleted = f
	s.mu.Unlock()
}

// Generation changes whenever anything in the store changes, so a cached
// decision is valid while the generation it was made at is current.
func (s *Store) Generation() uint64 { return s.cur.Load().gen }

// update applies f to a copy of the current state and makes it current
// once persisted.
func (s *Store) update(f func(*state) error) error {
	s.mu.Lock()
	if r := s.replicate; r != nil {
		s.mu.Unlock()
		return s.updateReplicated(r, f)
	}
	old := s.cur.Load()
	n := old.clone()
	if err := f(n); err != nil {
		s.mu.Unlock()
		return err
	}
	if s.persist != nil {
		if err := s.persist(n.definitions()); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.cur.Store(n)
	hook := s.usersDeleted
	s.mu.Unlock()
	s.tellUsersDeleted(hook, old, n)
	return nil
}

// PutUser creates or replaces a user. Its hash must suit its algorithm.
func (s *Store) PutUser(u User) error {
	if u.Name == "" {
		return errors.New("user name must not be empty")
	}
	if err := CheckHash(u.HashingAlgorithm, u.PasswordHash); err != nil {
		return fmt.Errorf("user '%s': %w", u.Name, err)
	}
	for _, t := range u.Tags {
		if t == "" || strings.ContainsAny(t, ", ") {
			return fmt.Errorf("user '%s': invalid tag %q", u.Name, t)
		}
	}
	if u.HashingAlgorithm == "" {
		u.HashingAlgorithm = HashSHA256
	}
	u.Tags = slices.Clone(u.Tags)
	u.Limits = maps.Clone(u.Limits)
	return s.update(func(st *state) error { st.users[u.Name] = &u; return nil })
}

// AddUser creates or replaces user name with password hashed by
// HashSHA256 ("" leaves it without a password).
func (s *Store) AddUser(name, password string, tags ...string) error {
	u := User{Name: name, HashingAlgorithm: HashSHA256, Tags: tags}
	if password != "" {
		h, err := HashPassword(HashSHA256, password)
		if err != nil {
			return err
		}
		u.PasswordHash = h
	}
	return s.PutUser(u)
}

// DeleteUser removes a user and its permissions.
func (s *Store) DeleteUser(name string) error {
	return s.update(func(st *state) error {
		if st.users[name] == nil {
			return fmt.Errorf("user '%s': %w", name, ErrNotFound)
		}
		delete(st.users, name)
		st.dropPermissions(func(k userVHost) bool { return k.user == name })
		return nil
	})
}

// User returns a copy of user name. This is the one lookup of "does this
// user exist" the broker's mechanisms use (PLAIN through Authenticate,
// EXTERNAL directly).
func (s *Store) User(name string) (User, bool) {
	u := s.cur.Load().users[name]
	if u == nil {
		return User{}, false
	}
	c := *u
	c.Tags = slices.Clone(u.Tags)
	c.Limits = maps.Clone(u.Limits)
	return c, true
}

// Authenticate checks a password login: the user exists, has a password,
// and password hashes to it (compared in constant time).
func (s *Store) Authenticate(name, password string) (User, bool) {
	u, ok := s.User(name)
	if !ok || !passwordMatches(u.HashingAlgorithm, u.PasswordHash, password) {
		return User{}, false
	}
	return u, true
}

// PutVHost creates or replaces a vhost's metadata.
func (s *Store) PutVHost(v VHost) error {
	if v.Name == "" {
		return errors.New("vhost name must not be empty")
	}
	v.Tags = slices.Clone(v.Tags)
	v.Limits = maps.Clone(v.Limits)
	return s.update(func(st *state) error { st.vhosts[v.Name] = &v; return nil })
}

// DeleteVHost removes a vhost and every permission in it.
func (s *Store) DeleteVHost(name string) error {
	return s.update(func(st *state) error {
		if st.vhosts[name] == nil {
			return fmt.Errorf("vhost '%s': %w", name, ErrNotFound)
		}
		delete(st.vhosts, name)
		st.dropPermissions(func(k userVHost) bool { return k.vhost == name })
		return nil
	})
}

// VHost returns a copy of vhost name's metadata.
func (s *Store) VHost(name string) (VHost, bool) {
	v := s.cur.Load().vhosts[name]
	if v == nil {
		return VHost{}, false
	}
	c := *v
	c.Tags = slices.Clone(v.Tags)
	c.Limits = maps.Clone(v.Limits)
	return c, true
}

// DefaultQueueType is vhost's default queue type ("" when it has none
// or does not exist), without copying the rest of its metadata.
func (s *Store) DefaultQueueType(vhost string) string {
	if v := s.cur.Load().vhosts[vhost]; v != nil {
		return v.DefaultQueueType
	}
	return ""
}

// VHostNames lists the vhosts, sorted.
func (s *Store) VHostNames() []string {
	return slices.Sorted(maps.Keys(s.cur.Load().vhosts))
}

// compilePattern compiles a permission pattern as RabbitMQ matches it:
// unanchored, "" meaning "^$". A pattern Go cannot compile (RabbitMQ's are
// PCRE) yields nil, which denies, as RabbitMQ denies on a regex error.
func compilePattern(p string) *regexp.Regexp {
	if p == "" {
		p = "^$"
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil
	}
	return re
}

func compilePermission(p Permission) *compiledPerm {
	cp := &compiledPerm{Permission: p}
	for i, pat := range []string{p.Configure, p.Write, p.Read} {
		cp.re[i] = compilePattern(pat)
	}
	return cp
}

// compileTopic compiles the patterns as they stand; one with {username}
// or {vhost} is compiled again, expanded, by TopicMatcher.
func compileTopic(p TopicPermission) *compiledTopic {
	ct := &compiledTopic{TopicPermission: p}
	for i, pat := range []string{p.Write, p.Read} {
		ct.re[i] = compilePattern(pat)
	}
	return ct
}

// SetPermissions sets a user's permissions in a vhost; both must exist.
func (s *Store) SetPermissions(p Permission) error {
	cp := compilePermission(p)
	return s.update(func(st *state) error {
		if err := st.needUserVHost(p.User, p.VHost); err != nil {
			return err
		}
		st.perms[userVHost{p.User, p.VHost}] = cp
		return nil
	})
}

// ClearPermissions removes a user's permissions in a vhost.
func (s *Store) ClearPermissions(user, vhost string) error {
	return s.update(func(st *state) error {
		delete(st.perms, userVHost{user, vhost})
		return nil
	})
}

// SetTopicPermissions sets a user's topic permissions on one exchange of
// a vhost; the user and vhost must exist.
func (s *Store) SetTopicPermissions(p TopicPermission) error {
	ct := compileTopic(p)
	return s.update(func(st *state) error {
		if err := st.needUserVHost(p.User, p.VHost); err != nil {
			return err
		}
		st.putTopic(ct)
		return nil
	})
}

// ClearTopicPermissions removes a user's topic permissions in a vhost, on
// exchange only, or on every exchange when exchange is "".
func (s *Store) ClearTopicPermissions(user, vhost, exchange string) error {
	return s.update(func(st *state) error {
		k := userVHost{user, vhost}
		if exchange == "" {
			delete(st.topics, k)
			return nil
		}
		m := maps.Clone(st.topics[k])
		delete(m, exchange)
		if len(m) == 0 {
			delete(st.topics, k)
		} else {
			st.topics[k] = m
		}
		return nil
	})
}

// SetUserLimit sets (n >= 0) or clears (n < 0) one of a user's limits.
func (s *Store) SetUserLimit(user, limit string, n int64) error {
	if limit != LimitMaxConnections && limit != LimitMaxChannels {
		return fmt.Errorf("unknown user limit '%s' (allowed: %s, %s)", limit, LimitMaxConnections, LimitMaxChannels)
	}
	return s.update(func(st *state) error {
		u := st.users[user]
		if u == nil {
			return fmt.Errorf("user '%s': %w", user, ErrNotFound)
		}
		c := *u
		c.Limits = setLimit(u.Limits, limit, n)
		st.users[user] = &c
		return nil
	})
}

// SetVHostLimit sets (n >= 0) or clears (n < 0) one of a vhost's limits.
func (s *Store) SetVHostLimit(vhost, limit string, n int64) error {
	if limit != LimitMaxConnections && limit != LimitMaxQueues {
		return fmt.Errorf("unknown vhost limit '%s' (allowed: %s, %s)", limit, LimitMaxConnections, LimitMaxQueues)
	}
	return s.update(func(st *state) error {
		v := st.vhosts[vhost]
		if v == nil {
			return fmt.Errorf("vhost '%s': %w", vhost, ErrNotFound)
		}
		c := *v
		c.Limits = setLimit(v.Limits, limit, n)
		st.vhosts[vhost] = &c
		return nil
	})
}

func setLimit(m map[string]int64, limit string, n int64) map[string]int64 {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]int64{}
	}
	if n < 0 {
		delete(m, limit)
	} else {
		m[limit] = n
	}
	return m
}

// Limit returns a limit from limits and whether it is set (a negative one
// is not).
func Limit(limits map[string]int64, name string) (int64, bool) {
	n, ok := limits[name]
	return n, ok && n >= 0
}

// CanAccessVHost reports whether user may open a connection to vhost: any
// permission entry there is enough, as in RabbitMQ.
func (s *Store) CanAccessVHost(user, vhost string) bool {
	_, ok := s.cur.Load().perms[userVHost{user, vhost}]
	return ok
}

// Permitted reports whether user has access a to the resource called name
// (a queue, or an exchange with the default one as "amq.default") in
// vhost.
func (s *Store) Permitted(user, vhost string, a Access, name string) bool {
	p := s.cur.Load().perms[userVHost{user, vhost}]
	if p == nil {
		return false
	}
	re := p.re[a]
	return re != nil && re.MatchString(name)
}

// HasTopicPermissions reports whether user has topic permissions on
// exchange in vhost; without any, every routing key is allowed.
func (s *Store) HasTopicPermissions(user, vhost, exchange string) bool {
	return s.cur.Load().topics[userVHost{user, vhost}][exchange] != nil
}

// TopicPermitted reports whether user may write (publish) or read (bind)
// routing key on topic exchange in vhost. With no topic permission for
// the exchange, access is allowed. {username} and {vhost} in the pattern
// stand for the user's and vhost's names, substituted as they are.
func (s *Store) TopicPermitted(user, vhost, exchange string, a Access, routingKey string) bool {
	re, defined := s.TopicMatcher(user, vhost, exchange, a)
	return !defined || re != nil && re.MatchString(routingKey)
}

// TopicMatcher returns what TopicPermitted matches routing keys against,
// for a caller that checks many keys of one exchange (a channel caches it):
// defined is false when user has no topic permission on exchange (every
// key allowed); otherwise re matches the allowed keys, and a nil re allows
// none. Only Write and Read have topic permissions.
func (s *Store) TopicMatcher(user, vhost, exchange string, a Access) (re *regexp.Regexp, defined bool) {
	t := s.cur.Load().topics[userVHost{user, vhost}][exchange]
	if t == nil {
		return nil, false
	}
	i, pat := 0, t.Write
	switch a {
	case Write:
	case Read:
		i, pat = 1, t.Read
	default:
		return nil, true
	}
	if strings.Contains(pat, "{") {
		return compilePattern(strings.NewReplacer("{username}", user, "{vhost}", vhost).Replace(pat)), true
	}
	return t.re[i], true
}

// Policies returns the policies stored for vhost, sorted by name, or
// with operator its operator policies.
func (s *Store) Policies(vhost string, operator bool) []PolicyDef {
	v := s.cur.Load().vhosts[vhost]
	if v == nil {
		return nil
	}
	if operator {
		return slices.Clone(v.operatorPolicies)
	}
	return slices.Clone(v.policies)
}

// PutPolicy creates or replaces policy p (an operator policy with
// operator) in its vhost, which must exist; created is true for a new
// one. The caller has validated it.
func (s *Store) PutPolicy(p PolicyDef, operator bool) (created bool, err error) {
	err = s.update(func(st *state) error {
		v := st.vhosts[p.VHost]
		if v == nil {
			return fmt.Errorf("vhost '%s': %w", p.VHost, ErrNotFound)
		}
		c := *v
		list := c.listOf(operator)
		created = !slices.ContainsFunc(*list, func(o PolicyDef) bool { return o.Name == p.Name })
		*list = withPolicy(*list, p)
		st.vhosts[p.VHost] = &c
		return nil
	})
	return created, err
}

// DeletePolicy removes a policy (an operator policy with operator);
// ErrNotFound if there is none of that name.
func (s *Store) DeletePolicy(vhost, name string, operator bool) error {
	return s.update(func(st *state) error {
		v := st.vhosts[vhost]
		if v == nil {
			return fmt.Errorf("vhost '%s': %w", vhost, ErrNotFound)
		}
		c := *v
		list := c.listOf(operator)
		i := slices.IndexFunc(*list, func(o PolicyDef) bool { return o.Name == name })
		if i < 0 {
			return fmt.Errorf("policy '%s': %w", name, ErrNotFound)
		}
		*list = slices.Delete(slices.Clone(*list), i, i+1)
		st.vhosts[vhost] = &c
		return nil
	})
}

// listOf is v's policy list, or its operator policy list.
func (v *VHost) listOf(operator bool) *[]PolicyDef {
	if operator {
		return &v.operatorPolicies
	}
	return &v.policies
}

// withPolicy is list (not changed: older states share it) with p in
// place of the one of its name, sorted by name.
func withPolicy(list []PolicyDef, p PolicyDef) []PolicyDef {
	if p.ApplyTo == "" {
		p.ApplyTo = "all" // RabbitMQ's default
	}
	out := slices.DeleteFunc(slices.Clone(list), func(o PolicyDef) bool { return o.Name == p.Name })
	out = append(out, p)
	slices.SortFunc(out, func(a, b PolicyDef) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Empty reports whether the store holds no users and no vhosts (a first
// start).
func (s *Store) Empty() bool {
	st := s.cur.Load()
	return len(st.users) == 0 && len(st.vhosts) == 0
}

// VHostLimit returns one of vhost's limits, and whether it is set.
func (s *Store) VHostLimit(vhost, limit string) (int64, bool) {
	v := s.cur.Load().vhosts[vhost]
	if v == nil {
		return 0, false
	}
	return Limit(v.Limits, limit)
}

// UserLimit returns one of user's limits, and whether it is set.
func (s *Store) UserLimit(user, limit string) (int64, bool) {
	u := s.cur.Load().users[user]
	if u == nil {
		return 0, false
	}
	return Limit(u.Limits, limit)
}
