package broker

import (
	"net"
	"regexp"
	"slices"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Resource kinds as RabbitMQ's refusals name them.
const (
	resQueue    = "queue"
	resExchange = "exchange"
)

// permCache is a channel's memory of permission decisions, valid for one
// generation of the security store: a change to users or permissions
// bumps it and the next check starts afresh. Only the channel's reader
// goroutine uses it, so it needs no lock.
//
// Publishing asks once per exchange (write, and the exchange's topic
// matcher) and after that only compares the exchange's name and the
// generation: nothing is looked up or allocated per message.
type permCache struct {
	gen       uint64
	decisions map[permKey]bool
	// pubExchange is the exchange the last publish was allowed to write
	// to, in generation gen; "" with pubOK false means none yet.
	pubExchange string
	pubOK       bool
	// topic is the write matcher of pubExchange when it is a topic
	// exchange with topic permissions (topicDefined), and the last routing
	// key it allowed.
	topic        *regexp.Regexp
	topicDefined bool
	topicKey     string
	topicKeyOK   bool
}

type permKey struct {
	access security.Access
	kind   string
	name   string
}

// fresh clears the cache when the store has changed since it was filled.
func (p *permCache) fresh(gen uint64) {
	if p.gen != gen {
		*p = permCache{gen: gen}
	}
}

// errAccess is RabbitMQ 3.10's refusal of a resource. It does not say
// which access was refused (later versions start with "configure", "write"
// or "read"); a is kept for the log and for when that changes.
func errAccess(m amqp.Method, _ security.Access, kind, name, vhost, user string) error {
	return protoErr(amqp.AccessRefused, m, "access to %s '%s' in vhost '%s' refused for user '%s'",
		kind, name, vhost, user)
}

// checkAccess refuses with 403 unless the channel's user has access a to
// the queue or exchange called name (the default exchange is checked as
// amq.default, as RabbitMQ does).
func (ch *channel) checkAccess(m amqp.Method, a security.Access, kind, name string) error {
	if kind == resExchange && name == "" {
		name = "amq.default"
	}
	c := ch.conn
	sec := c.srv.sec
	p := &ch.perm
	p.fresh(sec.Generation())
	k := permKey{a, kind, name}
	ok, known := p.decisions[k]
	if !known {
		ok = sec.Permitted(c.user, c.vhost.name, a, name)
		if p.decisions == nil || len(p.decisions) >= lookupCacheMax {
			p.decisions = map[permKey]bool{}
		}
		p.decisions[k] = ok
	}
	if !ok {
		return errAccess(m, a, kind, name, c.vhost.name, c.user)
	}
	return nil
}

// checkTopic refuses with 403 unless the user may use routing key on
// topic exchange x (a topic permission for it exists and allows the key,
// or none exists). Other exchange kinds are not checked.
func (ch *channel) checkTopic(m amqp.Method, a security.Access, x *Exchange, key string) error {
	if x == nil || x.Kind != kindTopic {
		return nil
	}
	c := ch.conn
	if c.srv.sec.TopicPermitted(c.user, c.vhost.name, x.Name, a, key) {
		return nil
	}
	return errTopic(m, a, key, x.Name, c.vhost.name, c.user)
}

// errTopic is RabbitMQ 3.10's refusal of a routing key (again without the
// access's name).
func errTopic(m amqp.Method, _ security.Access, key, exchange, vhost, user string) error {
	return protoErr(amqp.AccessRefused, m, "access to topic '%s' in exchange '%s' in vhost '%s' refused for user '%s'",
		key, exchange, vhost, user)
}

// checkPublishWrite is basic.publish's write check on the exchange,
// remembered for the channel's next publishes to the same exchange.
func (ch *channel) checkPublishWrite(m *amqp.BasicPublish) error {
	p := &ch.perm
	if p.pubOK && p.gen == ch.conn.srv.sec.Generation() && p.pubExchange == m.Exchange {
		return nil
	}
	if err := ch.checkAccess(m, security.Write, resExchange, m.Exchange); err != nil {
		return err
	}
	p.pubExchange, p.pubOK = m.Exchange, true
	p.topic, p.topicDefined, p.topicKey, p.topicKeyOK = nil, false, "", false
	c := ch.conn
	p.topic, p.topicDefined = c.srv.sec.TopicMatcher(c.user, c.vhost.name, m.Exchange, security.Write)
	return nil
}

// checkPublishTopic is basic.publish's topic write check on the routing
// key; it runs after checkPublishWrite for the same exchange.
func (ch *channel) checkPublishTopic(m *amqp.BasicPublish, x *Exchange) error {
	p := &ch.perm
	if !p.topicDefined || x.Kind != kindTopic {
		return nil
	}
	if p.topicKeyOK && p.topicKey == m.RoutingKey {
		return nil
	}
	if p.topic == nil || !p.topic.MatchString(m.RoutingKey) {
		c := ch.conn
		return errTopic(m, security.Write, m.RoutingKey, x.Name, c.vhost.name, c.user)
	}
	p.topicKey, p.topicKeyOK = m.RoutingKey, true
	return nil
}

// impersonates reports whether the channel's user may publish with
// another user's user_id.
func (c *conn) impersonates() bool {
	u, ok := c.srv.lookupUser(c.user)
	return ok && u.HasTag(security.TagImpersonator)
}

// Security is the server's store of users, vhosts and permissions;
// changes to it apply to the next check (and are stored with a data
// directory).
func (s *Server) Security() *security.Store { return s.sec }

// lookupUser is the broker's one question "who is user name": every
// login mechanism asks it (PLAIN and AMQPLAIN through authenticate,
// EXTERNAL directly).
func (s *Server) lookupUser(name string) (security.User, bool) {
	return s.sec.User(name)
}

// authenticate checks a password login.
func (s *Server) authenticate(user, pass string) bool {
	_, ok := s.sec.Authenticate(user, pass)
	return ok
}

// loopbackAllowed applies loopback_users (default [guest]): those users
// may log in only over loopback.
func (s *Server) loopbackAllowed(user string, addr net.Addr) bool {
	return !slices.Contains(s.cfg.LoopbackUsers, user) || isLoopback(addr)
}

// permitted reports whether user may open vhost: any permission entry
// there is enough, as in RabbitMQ.
func (s *Server) permitted(user, vhost string) bool { return s.sec.CanAccessVHost(user, vhost) }

// authorize makes a definitions change check the channel's permissions
// where RabbitMQ checks them (Apply's checks run in RabbitMQ's order).
func authorize(ch *channel) ApplyOption { return func(o *applyOpts) { o.authz = ch } }

// check is Apply's permission check: nil for the broker's own changes.
func (o *applyOpts) check(m amqp.Method, a security.Access, kind, name string) error {
	if o.authz == nil {
		return nil
	}
	return o.authz.checkAccess(m, a, kind, name)
}

// checkTopic is Apply's topic check on a binding key.
func (o *applyOpts) checkTopic(m amqp.Method, x *Exchange, key string) error {
	if o.authz == nil {
		return nil
	}
	return o.authz.checkTopic(m, security.Read, x, key)
}

// securityDefaults gives a config without Security one seeded from Users
// (default guest/guest) and VHosts (default "/"), each user an
// administrator with every permission on each vhost, as RabbitMQ's blank
// node has guest; and LoopbackUsers its default. It may run more than once.
func (c *Config) securityDefaults() {
	if c.Security == nil {
		users, vhosts := c.Users, c.VHosts
		if users == nil {
			users = map[string]string{"guest": "guest"}
		}
		if len(vhosts) == 0 {
			vhosts = []string{"/"}
		}
		sec := security.NewStore()
		for _, v := range vhosts {
			_ = sec.PutVHost(security.VHost{Name: v})
		}
		for name, pass := range users {
			_ = sec.AddUser(name, pass, security.TagAdministrator)
			for _, v := range vhosts {
				_ = sec.SetPermissions(security.Permission{User: name, VHost: v, Configure: ".*", Write: ".*", Read: ".*"})
			}
		}
		c.Security = sec
	}
	if c.LoopbackUsers == nil {
		c.LoopbackUsers = []string{"guest"}
	}
}

// argDLX is the queue argument naming the dead-letter exchange, which a
// declare needs write access to.
const argDLX = "x-dead-letter-exchange"

// readQueue resolves a queue argument for basic.consume, basic.get and
// queue.purge and checks read access to it first, as RabbitMQ does (a
// refusal comes before not-found).
func (ch *channel) readQueue(m amqp.Method, name string) (*Queue, error) {
	if name == "" {
		name = ch.lastQueue
	}
	if name != "" {
		if err := ch.checkAccess(m, security.Read, resQueue, name); err != nil {
			return nil, err
		}
	}
	return ch.queueFor(m, name)
}
