package management

import (
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// Channels and consumers as RabbitMQ 3.10.8's management API shows them
// (recorded by scripts/record-management-fixtures). The counters are the
// channel's own since it opened, their *_details rates sampled by the
// listings (counterRates). Visibility is the connections': administrators and
// monitoring users see every channel, others their own; consumers are
// listed per visible vhost, as RabbitMQ lists them.

// channelStats is a channel's message_stats: as in RabbitMQ, the
// publishing side's counters once it has published, the consuming side's
// once it has had a delivery, a get or an ack, each with its rate.
func channelStats(vals map[string]uint64, rates map[string]float64) item {
	m := item{}
	if vals["publish"] > 0 {
		maps.Copy(m, statsItem(publishKeys, vals, rates))
	}
	if vals["deliver_get"]+vals["get_empty"]+vals["ack"] > 0 {
		maps.Copy(m, statsItem(consumeKeys, vals, rates))
	}
	return m
}

// The channel counters' names in message_stats.
var (
	publishKeys = []string{"publish", "confirm", "return_unroutable", "drop_unroutable"}
	consumeKeys = []string{"deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "redeliver", "ack", "deliver_get"}
)

// chanKey names a channel for its rates: its connection's ConnInfo (one
// per connection, never reused) and its number.
type chanKey struct {
	conn *broker.ConnInfo
	n    uint16
}

// sampleChannels samples every open channel's counters (chans, all of
// them: the samples of channels not among them are dropped) and returns,
// in chans' order, their values and current rates.
func (h *Handler) sampleChannels(chans []broker.ChannelInfo) ([]map[string]uint64, []map[string]float64) {
	now, interval := time.Now(), h.srv.StatsInterval()
	vals := make([]map[string]uint64, len(chans))
	rates := make([]map[string]float64, len(chans))
	open := make(map[chanKey]bool, len(chans))
	for i := range chans {
		k := chanKey{chans[i].Conn, chans[i].Number}
		open[k] = true
		vals[i] = counterValues(chans[i].Counters)
		rates[i] = h.chanRates.sample(now, interval, k, vals[i])
	}
	h.chanRates.prune(func(k chanKey) bool { return !open[k] })
	h.chanIdle.prune(func(k chanKey) bool { return !open[k] })
	h.destRates.prune(func(k destKey) bool {
		return !open[k.chanKey] || k.x != nil && k.x.Deleted() || k.q != nil && k.q.Deleted()
	})
	return vals, rates
}

// destKey names a channel's counters for one exchange (x) or one queue
// (q) for their rates.
type destKey struct {
	chanKey
	x *broker.Exchange
	q *broker.Queue
}

// channelDests are one channel's publishes (per exchange) and deliveries
// (per queue), as RabbitMQ 3.10 shows them with rates_mode detailed: every
// counter, with its rate, in each.
func (h *Handler) channelDests(c *broker.ChannelInfo) (publishes, deliveries []item) {
	now, interval := time.Now(), h.srv.StatsInterval()
	k := chanKey{c.Conn, c.Number}
	xs, qs := c.Destinations()
	publishes, deliveries = []item{}, []item{}
	for _, x := range xs {
		vals := map[string]uint64{"publish": x.Publish, "confirm": x.Confirm,
			"return_unroutable": x.ReturnUnroutable, "drop_unroutable": x.DropUnroutable}
		rates := h.destRates.sample(now, interval, destKey{chanKey: k, x: x.Exchange}, vals)
		publishes = append(publishes, item{"exchange": item{"name": x.Exchange.Name, "vhost": c.Conn.VHost},
			"stats": statsItem(publishKeys, vals, rates)})
	}
	for _, q := range qs {
		vals := map[string]uint64{"deliver": q.Deliver, "deliver_no_ack": q.DeliverNoAck, "get": q.Get,
			"get_no_ack": q.GetNoAck, "get_empty": q.GetEmpty, "redeliver": q.Redeliver, "ack": q.Ack,
			"deliver_get": q.Deliver + q.DeliverNoAck + q.Get + q.GetNoAck}
		rates := h.destRates.sample(now, interval, destKey{chanKey: k, q: q.Queue}, vals)
		deliveries = append(deliveries, item{"queue": item{"name": q.Queue.Name, "vhost": c.Conn.VHost},
			"stats": statsItem(consumeKeys, vals, rates)})
	}
	return publishes, deliveries
}

// statsItem is message_stats with keys, each with its rate.
func statsItem(keys []string, vals map[string]uint64, rates map[string]float64) item {
	m := make(item, 2*len(keys))
	for _, k := range keys {
		m[k], m[k+"_details"] = vals[k], rate(rates[k])
	}
	return m
}

// counterValues are a channel's counters by their message_stats names.
func counterValues(c broker.ChannelCounters) map[string]uint64 {
	return map[string]uint64{
		"publish": c.Publish, "confirm": c.Confirm, "return_unroutable": c.ReturnUnroutable,
		"drop_unroutable": c.DropUnroutable, "deliver": c.Deliver, "deliver_no_ack": c.DeliverNoAck,
		"get": c.Get, "get_no_ack": c.GetNoAck, "get_empty": c.GetEmpty, "redeliver": c.Redeliver,
		"ack": c.Ack, "deliver_get": c.Deliver + c.DeliverNoAck + c.Get + c.GetNoAck,
	}
}

// channelItem is a channel as /api/channels lists it, with its
// counters' values and rates (sampleChannels).
func (h *Handler) channelItem(c *broker.ChannelInfo, vals map[string]uint64, rates map[string]float64) item {
	peerHost, peerPort := splitAddr(c.Conn.Peer)
	var activity uint64
	for _, v := range vals {
		activity += v
	}
	it := item{
		"name": c.Name, "number": int(c.Number), "node": h.node, "user": c.Conn.User,
		"connection_details":        item{"name": c.Conn.Name, "peer_host": peerHost, "peer_port": peerPort},
		"user_who_performed_action": c.Conn.User, "vhost": c.Conn.VHost,
		"state": "running", "prefetch_count": c.PrefetchCount, "global_prefetch_count": c.GlobalPrefetchCount,
		"consumer_count": c.Consumers, "messages_unacknowledged": c.Unacked,
		"messages_unconfirmed": c.Unconfirmed, "messages_uncommitted": c.UncommittedMessages,
		"acks_uncommitted": c.UncommittedAcks, "pending_raft_commands": 0,
		"confirm": c.Confirm, "transactional": c.Transactional,
		"reductions": 0, "reductions_details": rate(0),
		"message_stats": channelStats(vals, rates), "garbage_collection": gcStats{},
	}
	h.chanIdle.set(it, chanKey{c.Conn, c.Number}, activity)
	return it
}

// consumerItem is a consumer as /api/consumers and a queue's
// consumer_details show it.
func (h *Handler) consumerItem(c *broker.ConsumerInfo) item {
	peerHost, peerPort := splitAddr(c.Conn.Peer)
	status := "up"
	if c.SingleActive {
		status = "single_active"
		if !c.Active {
			status = "waiting"
		}
	}
	return item{
		"consumer_tag": c.Tag, "queue": item{"name": c.Queue, "vhost": c.VHost},
		"channel_details": item{
			"name": c.Conn.Name + " (" + strconv.Itoa(int(c.Channel)) + ")", "number": int(c.Channel),
			"connection_name": c.Conn.Name, "node": h.node, "user": c.Conn.User,
			"peer_host": peerHost, "peer_port": peerPort,
		},
		"ack_required": c.AckRequired, "exclusive": c.Exclusive, "prefetch_count": c.PrefetchCount,
		"active": c.Active, "activity_status": status, "arguments": tableJSON(c.Arguments),
	}
}

// seesChannel: the user sees a channel of a connection it sees.
func (rq *request) seesChannel(c *broker.ChannelInfo) bool {
	return rq.seesConnection(c.Conn)
}

// channels serves /api/channels[/{name}], /api/vhosts/{vhost}/channels
// (vhost set) and /api/connections/{name}/channels (conn set).
func (h *Handler) channels(rq *request, vhost, conn *string) error {
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	s := rq.seg
	rg, err := parseRanges(rq.r)
	if err != nil {
		return err
	}
	if vhost != nil && h.readVHost(rq, *vhost) == nil {
		return errNotFound()
	}
	all := h.srv.Channels()
	vals, rates := h.sampleChannels(all)
	if conn != nil {
		found := false
		for _, c := range h.srv.Connections() {
			found = found || c.Name == *conn && rq.seesConnection(c)
		}
		if !found {
			return errNotFound()
		}
	}
	if vhost != nil || conn != nil || len(s) == 1 {
		items := []item{}
		for i := range all {
			c := &all[i]
			if rq.seesChannel(c) && (vhost == nil || c.Conn.VHost == *vhost) && (conn == nil || c.Conn.Name == *conn) {
				it := h.channelItem(c, vals[i], rates[i])
				if rg.any() {
					h.channelRanges(it, chanKey{c.Conn, c.Number}, vals[i], rg)
				}
				items = append(items, it)
			}
		}
		return rq.reply(items)
	}
	if len(s) != 2 {
		return errNotFound()
	}
	for i := range all {
		c := &all[i]
		if c.Name != s[1] || !rq.seesChannel(c) {
			continue
		}
		it := h.channelItem(c, vals[i], rates[i])
		if rg.any() {
			h.channelRanges(it, chanKey{c.Conn, c.Number}, vals[i], rg)
		}
		// One channel also has its consumers and its per-exchange and
		// per-queue stats.
		details := []item{}
		if v := h.srv.VHost(c.Conn.VHost); v != nil {
			for _, cn := range v.Consumers() {
				if cn.Conn == c.Conn && cn.Channel == c.Number {
					details = append(details, h.consumerItem(&cn))
				}
			}
		}
		it["consumer_details"] = details
		it["publishes"], it["deliveries"] = h.channelDests(c)
		writeJSON(rq.w, it)
		return nil
	}
	return errNotFound()
}

// consumers serves /api/consumers[/{vhost}].
func (h *Handler) consumers(rq *request) error {
	if len(rq.seg) > 2 {
		return errNotFound()
	}
	return h.listAll(rq, func(v *broker.VHost) []item {
		var items []item
		for _, c := range v.Consumers() {
			items = append(items, h.consumerItem(&c))
		}
		return items
	})
}

// queueConsumers adds a queue's consumer_details and the tags of its
// exclusive and single active consumers to its item, as RabbitMQ's GET of
// one queue shows them.
func (h *Handler) queueConsumers(it item, q *broker.Queue) {
	details := []item{}
	for _, c := range q.Consumers() {
		details = append(details, h.consumerItem(&c))
		if c.Exclusive {
			it["exclusive_consumer_tag"] = c.Tag
		}
		if c.SingleActive && c.Active {
			it["single_active_consumer_tag"] = c.Tag
		}
	}
	it["consumer_details"] = details
}
