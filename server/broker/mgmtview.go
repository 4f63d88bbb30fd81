package broker

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// This file is what the management API reads of the broker: snapshots of
// vhosts, queues, exchanges and bindings taken under the broker's own
// locks, and the login check. Nothing here walks messages.

// AuthenticateUser checks a password login for a client other than an
// AMQP connection (the management API) and returns the user, whose tags
// decide what it may do there. It asks the same store as AMQP's PLAIN.
func (s *Server) AuthenticateUser(user, pass string) (security.User, bool) {
	return s.sec.Authenticate(user, pass)
}

// LoopbackAllowed applies loopback_users to a login from remote, as
// connection.open does: those users may log in only over loopback.
func (s *Server) LoopbackAllowed(user string, remote net.Addr) bool {
	return s.loopbackAllowed(user, remote)
}

// VHosts returns the server's vhosts ordered by name: the security
// store's, each made on first use as (*Server).VHost makes it.
func (s *Server) VHosts() []*VHost {
	names := s.sec.VHostNames()
	sort.Strings(names)
	out := make([]*VHost, 0, len(names))
	for _, n := range names {
		if v := s.vhost(n); v != nil {
			out = append(out, v)
		}
	}
	return out
}

// vhostSnapshot returns the server's vhosts, unordered, taken under s.mu,
// for walks that then lock each vhost on its own.
func (s *Server) vhostSnapshot() []*VHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.vhosts))
}

// Name is the vhost's name.
func (v *VHost) Name() string { return v.name }

// Queues returns v's queues ordered by name, a snapshot taken under v's
// read lock. A Queue's exported fields are fixed at declaration.
func (v *VHost) Queues() []*Queue {
	v.mu.RLock()
	out := slices.Collect(maps.Values(v.queues))
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Queue) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Queue returns v's queue name, or nil.
func (v *VHost) Queue(name string) *Queue { return v.queue(name) }

// Stats reads q's QueueStats now (see (*VHost).QueueStats).
func (q *Queue) Stats() QueueStats { return q.stats(queue.Now()) }

// Exchanges returns v's exchanges ordered by name (the default exchange,
// "", first), a snapshot taken under v's read lock. An Exchange's
// exported fields are fixed at declaration.
func (v *VHost) Exchanges() []*Exchange {
	v.mu.RLock()
	out := slices.Collect(maps.Values(v.exchanges))
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Exchange) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Exchange returns v's exchange name ("" or amq.default: the default
// exchange), or nil.
func (v *VHost) Exchange(name string) *Exchange { return v.exchange(name) }

// Binding is one binding as the management API lists it.
type Binding struct {
	Source      string
	Destination string
	// ToExchange: Destination is an exchange, not a queue.
	ToExchange bool
	RoutingKey string
	Arguments  amqp.Table
}

// Bindings returns v's bindings: the default exchange's implied one to
// every queue (key: the queue's name), as RabbitMQ lists them, then every
// exchange's, ordered by source, destination kind, destination and key.
// Each exchange is locked only to copy its bindings.
func (v *VHost) Bindings() []Binding {
	var out []Binding
	for _, q := range v.Queues() {
		out = append(out, Binding{Destination: q.Name, RoutingKey: q.Name})
	}
	for _, x := range v.Exchanges() {
		if x.Name == "" {
			continue
		}
		for _, b := range x.bindingList() {
			nb := Binding{Source: x.Name, RoutingKey: b.key, Arguments: b.args}
			if b.q != nil {
				nb.Destination = b.q.Name
			} else if b.x != nil {
				nb.Destination, nb.ToExchange = b.x.Name, true
			}
			out = append(out, nb)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.ToExchange != b.ToExchange {
			return b.ToExchange // queues first
		}
		if a.Destination != b.Destination {
			return a.Destination < b.Destination
		}
		return a.RoutingKey < b.RoutingKey
	})
	return out
}

// Purge drops queue name's ready messages, as queue.purge does, and
// returns how many; ok is false when there is no such queue.
func (v *VHost) Purge(name string) (n int, ok bool) {
	q := v.queue(name)
	if q == nil {
		return 0, false
	}
	return q.purge(), true
}

// ReplyCode returns the AMQP reply code and text (without RabbitMQ's
// upper-case code name) of an error Apply returned; ok is false for an
// error that is not a protocol exception.
func ReplyCode(err error) (code uint16, text string, ok bool) {
	var e *amqpError
	if !errors.As(err, &e) {
		return 0, "", false
	}
	text = e.text
	if name := replyNames[e.code]; name != "" {
		text = strings.TrimPrefix(text, name+" - ")
	}
	return e.code, text, true
}

// ConnInfo is a client connection as the management API lists it: what
// its handshake settled.
type ConnInfo struct {
	// Name is RabbitMQ's "peerhost:peerport -> host:port".
	Name          string
	Peer, Local   net.Addr
	User, VHost   string
	AuthMechanism string
	// ConnectionName is the client's connection_name property ("" if it
	// gave none), RabbitMQ's user_provided_name.
	ConnectionName string
	ConnectedAt    time.Time
	TLS            bool
	FrameMax       uint32
	ChannelMax     uint16
	Heartbeat      time.Duration

	// clientProperties is the client's table as it sent it: an idle
	// connection keeps these bytes rather than the decoded maps, which
	// cost several times more; ClientProperties decodes them.
	clientProperties []byte
	c                *conn // for Counters
}

// ClientProperties decodes the client properties of connection.start-ok
// (the handshake validated them, so only a codec bug gives nil).
func (in *ConnInfo) ClientProperties() amqp.Table {
	t, _, err := amqp.ReadTable(in.clientProperties)
	if err != nil {
		return nil
	}
	return t
}

// ConnCounters are a connection's socket counters, RabbitMQ's recv_oct,
// recv_cnt, send_oct, send_cnt and send_pend: bytes and reads received,
// bytes and writes sent, and bytes waiting in its output.
type ConnCounters struct {
	RecvOct, RecvCnt, SendOct, SendCnt, SendPend uint64
}

// Counters reads the connection's socket counters now (atomics: no lock).
func (in *ConnInfo) Counters() ConnCounters {
	c := in.c
	if c == nil {
		return ConnCounters{}
	}
	return ConnCounters{RecvOct: c.fr.ReadBytes(), RecvCnt: c.fr.Reads(), SendOct: c.sendOct.Load(),
		SendCnt: c.sendCnt.Load(), SendPend: uint64(max(c.outBytes.Load(), 0))}
}

// publishInfo records the connection's ConnInfo once its handshake has
// succeeded (the reader's fields are settled by then).
func (c *conn) publishInfo(startOk *amqp.ConnectionStartOk) {
	_, isTLS := c.nc.(TLSConn)
	peer, local := c.nc.RemoteAddr(), c.nc.LocalAddr()
	name, _ := startOk.ClientProperties["connection_name"].(string)
	c.info.Store(&ConnInfo{
		Name: peer.String() + " -> " + local.String(), Peer: peer, Local: local,
		User: c.user, VHost: c.vhost.name, AuthMechanism: startOk.Mechanism, ConnectionName: name,
		clientProperties: amqp.AppendTable(nil, startOk.ClientProperties), ConnectedAt: time.Now(), TLS: isTLS,
		FrameMax: c.frameMax, ChannelMax: c.channelMax, Heartbeat: c.heartbeat, c: c,
	})
}

// Connections returns the open client connections past their handshake
// and not closing, ordered by name; s.mu is held only to copy the set.
func (s *Server) Connections() []*ConnInfo {
	s.mu.Lock()
	out := make([]*ConnInfo, 0, len(s.conns))
	for c := range s.conns {
		if in := c.info.Load(); in != nil && !c.ending.Load() {
			out = append(out, in)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CloseConnection closes the connection named name (ConnInfo.Name) with
// 320 "CONNECTION_FORCED - reason", as RabbitMQ's management plugin does;
// false when there is none.
func (s *Server) CloseConnection(name, reason string) bool {
	var found *conn
	s.mu.Lock()
	for c := range s.conns {
		if in := c.info.Load(); in != nil && in.Name == name {
			found = c
			break
		}
	}
	s.mu.Unlock()
	if found == nil {
		return false
	}
	found.forceCloseWith("CONNECTION_FORCED - " + reason)
	return true
}

// publishWait bounds how long PublishMessage waits for the store.
const publishWait = 30 * time.Second

// PublishMessage publishes one message from exchange ("" or amq.default:
// the default exchange) in v as user, as the management API's publish
// does: through Publish, the one way into queues, counted as a client's
// publish, with RabbitMQ's user_id check. It waits until the message is
// as safe as the store makes it. routed is false when no queue took it.
func (v *VHost) PublishMessage(user, exchange, routingKey string, props amqp.Properties, body []byte) (routed bool, err error) {
	m := &amqp.BasicPublish{Exchange: exchange, RoutingKey: routingKey}
	x := v.exchange(exchange)
	if x == nil || x.removed.Load() {
		return false, errNoExchange(m, v.name, exchange)
	}
	if props.Flags&amqp.FlagUserID != 0 && props.UserID != user {
		if u, ok := v.server.lookupUser(user); !ok || !u.HasTag(security.TagImpersonator) {
			return false, protoErr(amqp.PreconditionFailed, m,
				"user_id property set to '%s' but authenticated user was '%s'", props.UserID, user)
		}
	}
	msg := &Message{Message: store.Message{Exchange: x.Name, RoutingKey: routingKey, Properties: props.Append(nil),
		Body: body, Persistent: props.DeliveryMode == 2, Meta: store.Meta{Priority: props.Priority}}}
	msg.ttl, msg.hasTTL = messageTTL(&props)
	v.server.stats.received.Add(1)
	done := make(chan error, 1) // buffered: a late store answer does not block
	out := v.Publish(&publisher{}, x, msg, nil, func(err error) { done <- err })
	x.published.count(0, out.Queues)
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, errQueueFull) {
			return false, err
		}
	case <-time.After(publishWait):
		return false, fmt.Errorf("the store did not take the message within %v", publishWait)
	}
	return out.Queues > 0, nil
}

// GetMode is what GetMessages does with the messages it takes, the
// management API's ackmode.
type GetMode uint8

// The management API's ackmodes.
const (
	// GetRequeue gives every message back, flagged redelivered
	// (ack_requeue_true, reject_requeue_true): a peek.
	GetRequeue GetMode = iota
	// GetAck acknowledges them (ack_requeue_false).
	GetAck
	// GetReject rejects them without requeue: dead-lettered where the
	// queue has a dead-letter exchange (reject_requeue_false).
	GetReject
)

// GotMessage is one message GetMessages took.
type GotMessage struct {
	Exchange, RoutingKey string
	Redelivered          bool
	// Remaining is the queue's ready count after this take.
	Remaining  int
	Properties amqp.Properties
	Body       []byte
}

// GetMessages takes up to count messages from queue name as basic.get
// does, one after another, and then settles them all by mode, so a peek
// of several shows several messages. Another connection's exclusive
// queue is refused (405), as a channel of no connection would be.
func (v *VHost) GetMessages(name string, count int, mode GetMode) ([]GotMessage, error) {
	m := &amqp.BasicGet{Queue: name}
	q := v.queue(name)
	if q == nil {
		return nil, errNoQueue(m, v.name, name)
	}
	if err := q.checkOwner(nil, m); err != nil {
		return nil, err
	}
	var out []GotMessage
	var taken []qentry
	for range count {
		ce, tag, remaining, ok, err := q.get(false)
		if err != nil {
			q.requeue(taken)
			return nil, errUnavailable(m, q)
		}
		if !ok {
			break
		}
		e := fromEntry(&ce, tag)
		props, _ := e.msg.decodeProperties()
		out = append(out, GotMessage{Exchange: e.msg.Exchange, RoutingKey: e.msg.RoutingKey, Redelivered: e.redelivered(),
			Remaining: remaining, Properties: props, Body: e.msg.Body})
		taken = append(taken, e)
	}
	if len(taken) == 0 {
		return out, nil
	}
	v.server.stats.delivered.Add(uint64(len(taken)))
	switch mode {
	case GetAck:
		v.server.stats.acknowledged.Add(uint64(len(taken)))
		q.cq.Settle(tagsOf(taken), queue.Ack)
	case GetReject:
		q.cq.Settle(tagsOf(taken), queue.Reject)
	default:
		q.requeue(taken)
	}
	return out, nil
}

// dropChannel removes channel id from the connection's set (reader).
func (c *conn) dropChannel(id uint16) {
	if ch := c.lastCh; ch != nil && ch.id == id {
		c.lastCh = nil
	}
	c.chansMu.Lock()
	delete(c.channels, id)
	c.chansMu.Unlock()
}

// chanView is what the management API reads of a channel: mirrors of the
// reader's own state and the channel's message counters, all atomics, so
// that a reader on another goroutine needs no lock for them.
type chanView struct {
	prefetch         atomic.Int32 // basic.qos global=false
	confirm, tx      atomic.Bool
	consumers        atomic.Int32 // consumers not cancelled
	txMsgs, txAcks   atomic.Int32 // publishes and acked messages of the open transaction
	unconfirmed      atomic.Int64 // confirm mode: publishes not yet confirmed
	publish          atomic.Uint64
	confirmed        atomic.Uint64
	returnUnroutable atomic.Uint64
	dropUnroutable   atomic.Uint64
	deliveryCounters // over every queue (chandests.go has them per queue)
}

// unlist uncounts a consumer that is cancelled or whose queue went.
func (v *chanView) unlist(cn *consumer) {
	if cn.listed.Swap(false) {
		v.consumers.Add(-1)
	}
}

func (v *chanView) txReset() {
	v.txMsgs.Store(0)
	v.txAcks.Store(0)
}

// ChannelCounters are a channel's message counts since it opened, named
// as RabbitMQ's channel message_stats.
type ChannelCounters struct {
	Publish, Confirm, ReturnUnroutable, DropUnroutable uint64
	Deliver, DeliverNoAck, Get, GetNoAck, GetEmpty     uint64
	Redeliver, Ack                                     uint64
}

// ChannelInfo is a channel as the management API lists it.
type ChannelInfo struct {
	Conn   *ConnInfo
	Number uint16
	// Name is RabbitMQ's "connection name (number)".
	Name                string
	PrefetchCount       int // basic.qos global=false, for new consumers
	GlobalPrefetchCount int // basic.qos global=true
	Consumers           int
	Unacked             int
	Unconfirmed         int
	UncommittedMessages int
	UncommittedAcks     int
	Confirm             bool
	Transactional       bool
	Counters            ChannelCounters
	ch                  *channel // for Destinations
}

// Channels returns the open channels of the connections Connections
// lists, ordered by name. Locks, each alone: Server.mu to copy the
// connections, each conn.chansMu to copy its channels, each channel.mu to
// count its unacked deliveries; the rest are atomics.
func (s *Server) Channels() []ChannelInfo {
	type connChans struct {
		c  *conn
		in *ConnInfo
	}
	s.mu.Lock()
	conns := make([]connChans, 0, len(s.conns))
	for c := range s.conns {
		if in := c.info.Load(); in != nil && !c.ending.Load() {
			conns = append(conns, connChans{c, in})
		}
	}
	s.mu.Unlock()
	var out []ChannelInfo
	var chans []*channel
	for _, cc := range conns {
		chans = chans[:0]
		cc.c.chansMu.Lock()
		for _, ch := range cc.c.channels {
			chans = append(chans, ch)
		}
		cc.c.chansMu.Unlock()
		for _, ch := range chans {
			if ch.ended.Load() {
				continue
			}
			out = append(out, ch.info(cc.in))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conn.Name != out[j].Conn.Name {
			return out[i].Conn.Name < out[j].Conn.Name
		}
		return out[i].Number < out[j].Number
	})
	return out
}

// info reads the channel's ChannelInfo; it takes ch.mu alone.
func (ch *channel) info(in *ConnInfo) ChannelInfo {
	ch.mu.Lock()
	unacked := ch.unacked.live()
	ch.mu.Unlock()
	v := &ch.view
	return ChannelInfo{
		Conn: in, Number: ch.id, Name: fmt.Sprintf("%s (%d)", in.Name, ch.id),
		PrefetchCount: int(v.prefetch.Load()), GlobalPrefetchCount: int(ch.globalLimit.Load()),
		Consumers: int(v.consumers.Load()), Unacked: unacked, Unconfirmed: int(max(v.unconfirmed.Load(), 0)),
		UncommittedMessages: int(v.txMsgs.Load()), UncommittedAcks: int(v.txAcks.Load()),
		Confirm: v.confirm.Load(), Transactional: v.tx.Load(), ch: ch,
		Counters: ChannelCounters{
			Publish: v.publish.Load(), Confirm: v.confirmed.Load(),
			ReturnUnroutable: v.returnUnroutable.Load(), DropUnroutable: v.dropUnroutable.Load(),
			Deliver: v.deliver.Load(), DeliverNoAck: v.deliverNoAck.Load(),
			Get: v.get.Load(), GetNoAck: v.getNoAck.Load(), GetEmpty: v.getEmpty.Load(),
			Redeliver: v.redeliver.Load(), Ack: v.ack.Load(),
		},
	}
}

// ConsumerInfo is a consumer as the management API lists it.
type ConsumerInfo struct {
	Tag          string
	VHost, Queue string
	// Conn and Channel are its channel's connection and number.
	Conn                   *ConnInfo
	Channel                uint16
	AckRequired, Exclusive bool
	PrefetchCount          int
	Arguments              amqp.Table
	// Active is false for a consumer of a single-active-consumer queue
	// that is not the active one.
	Active bool
	// SingleActive: the queue has a single active consumer.
	SingleActive bool
}

// Consumers returns q's consumers in the order they subscribed. Locks,
// each alone: q.mu to copy them, then the queue core's for its active
// consumer.
func (q *Queue) Consumers() []ConsumerInfo {
	q.mu.Lock()
	cs := slices.Clone(q.consumers)
	q.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}
	active := uint64(q.cq.Info().Active)
	out := make([]ConsumerInfo, 0, len(cs))
	for _, c := range cs {
		in := c.ch.conn.info.Load()
		if in == nil || c.gone.Load() {
			continue
		}
		out = append(out, ConsumerInfo{
			Tag: c.tag, VHost: q.vhost.name, Queue: q.Name, Conn: in, Channel: c.ch.id,
			AckRequired: !c.noAck, Exclusive: c.exclusive, PrefetchCount: int(c.prefetch), Arguments: c.args,
			Active: active == 0 || c.cid.Load() == active, SingleActive: active != 0,
		})
	}
	return out
}

// Consumers returns the consumers of every queue of v, by queue name,
// then in subscription order (see (*Queue).Consumers for the locks).
func (v *VHost) Consumers() []ConsumerInfo {
	var out []ConsumerInfo
	for _, q := range v.Queues() {
		out = append(out, q.Consumers()...)
	}
	return out
}

// StatsInterval is how often queue counters are sampled for their rates
// (Config.StatsInterval, default 5 s): the management API samples
// channels' counters no more often.
func (s *Server) StatsInterval() time.Duration { return s.statsInterval() }
