package broker

import (
	"fmt"
	"slices"
	"sync"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// tally counts open connections per vhost and per user, and open channels
// per user, against the security store's limits (RabbitMQ's vhost
// max-connections and user max-connections and max-channels).
//
// Locking: mu is a leaf; it is taken with no other broker lock held,
// and nothing is called under it.
type tally struct {
	mu         sync.Mutex
	conns      map[*conn]tallied
	vhostConns map[string]int
	userConns  map[string]int
	userChans  map[string]int
}

type tallied struct{ user, vhost string }

// admitConnection counts c as open on vhost for user, or refuses it with
// RabbitMQ's 530 when a limit is reached: the vhost's first, then the
// user's.
func (s *Server) admitConnection(c *conn, user, vhost string) *amqpError {
	t := &s.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	// Asked again under mu: a user or vhost deleted since the handshake's
	// check has had its connections closed from this tally already (the
	// store changes first), so one admitted now would stay open.
	if !s.sec.CanAccessVHost(user, vhost) {
		return protoErr(amqp.NotAllowed, &amqp.ConnectionOpen{}, "access to vhost '%s' refused for user '%s'", vhost, user)
	}
	if n, ok := s.sec.VHostLimit(vhost, security.LimitMaxConnections); ok && int64(t.vhostConns[vhost]) >= n {
		return protoErr(amqp.NotAllowed, &amqp.ConnectionOpen{},
			"access to vhost '%s' refused for user '%s': connection limit (%d) is reached", vhost, user, n)
	}
	if n, ok := s.sec.UserLimit(user, security.LimitMaxConnections); ok && int64(t.userConns[user]) >= n {
		return protoErr(amqp.NotAllowed, &amqp.ConnectionOpen{},
			"connection refused for user '%s': user connection limit (%d) is reached", user, n)
	}
	if t.conns == nil {
		t.conns, t.vhostConns, t.userConns, t.userChans = map[*conn]tallied{}, map[string]int{}, map[string]int{}, map[string]int{}
	}
	t.conns[c] = tallied{user, vhost}
	t.vhostConns[vhost]++
	t.userConns[user]++
	return nil
}

// closeUserConnections closes the connections of users just deleted with
// RabbitMQ 3.10.8's 320 (checked with rabbitmqctl delete_user):
// "CONNECTION_FORCED - user 'u' is deleted". It is the security store's
// users-deleted hook, so every way of deleting a user closes them.
//
// Locking: takes t.mu to copy the connections, and closes them without it.
func (s *Server) closeUserConnections(users []string) {
	t := &s.tally
	type forced struct {
		c    *conn
		user string
	}
	var cs []forced
	t.mu.Lock()
	for c, e := range t.conns {
		if slices.Contains(users, e.user) {
			cs = append(cs, forced{c, e.user})
		}
	}
	t.mu.Unlock()
	for _, f := range cs {
		f.c.forceCloseWith(fmt.Sprintf("CONNECTION_FORCED - user '%s' is deleted", f.user))
	}
}

// releaseConnection uncounts c (if admitted) when it ends.
func (s *Server) releaseConnection(c *conn) {
	t := &s.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.conns[c]
	if !ok {
		return
	}
	delete(t.conns, c)
	decrement(t.vhostConns, e.vhost)
	decrement(t.userConns, e.user)
}

func decrement(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// admitChannel counts a channel of user, or refuses it with RabbitMQ's
// 530 when the user's max-channels (across its connections) is reached.
func (s *Server) admitChannel(m amqp.Method, user string) *amqpError {
	t := &s.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := s.sec.UserLimit(user, security.LimitMaxChannels); ok && int64(t.userChans[user]) >= n {
		return protoErr(amqp.NotAllowed, m,
			"number of channels opened for user '%s' has reached the maximum allowed user limit of (%d)", user, n)
	}
	if t.userChans == nil {
		t.userChans = map[string]int{}
	}
	t.userChans[user]++
	return nil
}

// releaseChannel uncounts a channel of user.
func (s *Server) releaseChannel(user string) {
	t := &s.tally
	t.mu.Lock()
	decrement(t.userChans, user)
	t.mu.Unlock()
}

// checkQueueLimit refuses a new queue in v past its max-queues with
// RabbitMQ's 406. The caller holds v.defsMu, so the count cannot move.
func (v *VHost) checkQueueLimit(m amqp.Method, name string) error {
	n, ok := v.server.sec.VHostLimit(v.name, security.LimitMaxQueues)
	if ok && int64(len(v.queues)) >= n {
		return protoErr(amqp.PreconditionFailed, m, "cannot declare queue '%s': queue limit in vhost '%s' (%d) is reached", name, v.name, n)
	}
	return nil
}
