package management

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// route dispatches an authenticated request on its first segment.
func (h *Handler) route(rq *request) error {
	if len(rq.seg) == 0 {
		return errNotFound()
	}
	get := rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead
	switch rq.seg[0] {
	case "connections":
		if len(rq.seg) == 3 && rq.seg[2] == "channels" {
			return h.channels(rq, nil, &rq.seg[1])
		}
		return h.connections(rq, nil)
	case "channels":
		if len(rq.seg) > 2 {
			return errNotFound()
		}
		return h.channels(rq, nil, nil)
	case "consumers":
		return h.consumers(rq)
	case "definitions":
		return h.definitions(rq)
	case "vhost-limits", "user-limits":
		return h.limits(rq, rq.seg[0] == "user-limits")
	case "aliveness-test":
		return h.aliveness(rq)
	case "policies", "operator-policies":
		return h.policies(rq, rq.seg[0] == "operator-policies")
	case "users":
		return h.users(rq)
	case "permissions", "topic-permissions":
		return h.permissions(rq, rq.seg[0] == "topic-permissions")
	case "vhosts":
		if len(rq.seg) == 3 && (rq.seg[2] == "permissions" || rq.seg[2] == "topic-permissions") {
			if !get {
				return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
			}
			return h.vhostPermissions(rq)
		}
		if len(rq.seg) == 3 && rq.seg[2] == "connections" {
			return h.connections(rq, &rq.seg[1])
		}
		if len(rq.seg) == 3 && rq.seg[2] == "channels" {
			return h.channels(rq, &rq.seg[1], nil)
		}
		if len(rq.seg) == 2 && rq.r.Method == http.MethodPut {
			return h.putVHost(rq, rq.seg[1])
		}
		if len(rq.seg) == 2 && rq.r.Method == http.MethodDelete {
			return h.deleteVHost(rq, rq.seg[1])
		}
		if !get {
			return methodNotAllowed(rq, "HEAD, GET, PUT, DELETE, OPTIONS")
		}
		return h.readGlobal(rq)
	case "cluster-status":
		if !get || len(rq.seg) != 1 {
			return errNotFound()
		}
		return h.clusterStatus(rq)
	case "cluster-members":
		return h.clusterMembers(rq)
	case "rebalance":
		return h.rebalance(rq)
	case "overview", "whoami", "extensions", "nodes":
		if !get {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		return h.readGlobal(rq)
	case "queues":
		return h.queues(rq)
	case "exchanges":
		return h.exchanges(rq)
	case "bindings":
		return h.bindings(rq)
	case "health":
		return h.health(rq)
	case "x-storage":
		return h.storage(rq)
	}
	return errNotFound()
}

// readGlobal answers the endpoints that name no object.
func (h *Handler) readGlobal(rq *request) error {
	switch {
	case rq.seg[0] == "overview" && len(rq.seg) == 1:
		rg, err := parseRanges(rq.r)
		if err != nil {
			return err
		}
		writeJSON(rq.w, h.overview(rq, rg))
	case rq.seg[0] == "whoami" && len(rq.seg) == 1:
		tags := rq.user.Tags
		if tags == nil {
			tags = []string{}
		}
		writeJSON(rq.w, item{"name": rq.user.Name, "tags": tags})
	case rq.seg[0] == "extensions" && len(rq.seg) == 1:
		writeJSON(rq.w, []item{})
	case rq.seg[0] == "nodes" && len(rq.seg) == 1:
		items, err := h.nodeItems(rq)
		if err != nil {
			return err
		}
		return rq.reply(items)
	case rq.seg[0] == "nodes" && len(rq.seg) == 2:
		items, err := h.nodeItems(rq)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it["name"] == rq.seg[1] {
				writeJSON(rq.w, it)
				return nil
			}
		}
		return errNotFound()
	case rq.seg[0] == "vhosts" && len(rq.seg) == 1:
		rg, err := parseRanges(rq.r)
		if err != nil {
			return err
		}
		var items []item
		for _, v := range h.visibleVHosts(rq) {
			it := h.vhostItem(v)
			if rg.any() {
				h.vhostRanges(it, v, rg)
			}
			items = append(items, it)
		}
		return rq.reply(nonNil(items))
	case rq.seg[0] == "vhosts" && len(rq.seg) == 2:
		rg, err := parseRanges(rq.r)
		if err != nil {
			return err
		}
		v := h.readVHost(rq, rq.seg[1])
		if v == nil {
			return errNotFound()
		}
		it := h.vhostItem(v)
		if rg.any() {
			h.vhostRanges(it, v, rg)
		}
		writeJSON(rq.w, it)
	default:
		return errNotFound()
	}
	return nil
}

func nonNil(items []item) []item {
	if items == nil {
		return []item{}
	}
	return items
}

// visibleVHosts are the vhosts the user may read.
func (h *Handler) visibleVHosts(rq *request) []*broker.VHost {
	all := h.srv.VHosts()
	if rq.seesAll() {
		return all
	}
	out := all[:0]
	for _, v := range all {
		if h.srv.Security().CanAccessVHost(rq.user.Name, v.Name()) {
			out = append(out, v)
		}
	}
	return out
}

// readVHost is vhost name if the user may read it, else nil (RabbitMQ
// answers 404 for both).
func (h *Handler) readVHost(rq *request, name string) *broker.VHost {
	v := h.srv.VHost(name)
	if v == nil || !rq.seesAll() && !h.srv.Security().CanAccessVHost(rq.user.Name, name) {
		return nil
	}
	return v
}

// details is RabbitMQ's *_details object: a struct, not a map, since a
// queue has a score of them and listings build thousands of queues.
type details struct {
	Rate float64 `json:"rate"`
}

// rate is a *_details object.
func rate(r float64) details { return details{r} }

// queueItem is a queue as RabbitMQ 3.10's /api/queues shows a classic
// queue, from its stats, plus our age fields.
func (h *Handler) queueItem(q *broker.Queue, st broker.QueueStats) item {
	c := st.Counters
	msgs := st.Ready + st.Unacked
	node, state := h.node, "running"
	if home := q.HomeNode(); home != "" {
		node = home // a cluster's classic queue is its home node's
	}
	if q.Down() {
		state = "down"
	}
	it := item{
		"name": q.Name, "vhost": st.VHost, "type": q.Type(), "node": node, "state": state,
		"durable": q.Durable, "auto_delete": q.AutoDelete, "exclusive": q.Exclusive,
		"arguments": tableJSON(q.Args), "policy": nil, "operator_policy": nil,
		"effective_policy_definition": item{}, "exclusive_consumer_tag": nil,
		"single_active_consumer_tag": nil, "recoverable_slaves": nil,
		"consumers": st.Consumers, "consumer_capacity": 0, "consumer_utilisation": 0,
		"consumer_details": []item{}, "deliveries": []item{}, "incoming": []item{},
		"messages": msgs, "messages_details": rate(0),
		"messages_ready": st.Ready, "messages_ready_details": rate(0),
		"messages_unacknowledged": st.Unacked, "messages_unacknowledged_details": rate(0),
		"messages_ram": msgs, "messages_ready_ram": st.Ready, "messages_unacknowledged_ram": st.Unacked,
		"messages_persistent": 0, "messages_paged_out": 0,
		"message_bytes": st.ReadyBytes + st.UnackedBytes, "message_bytes_ready": st.ReadyBytes,
		"message_bytes_unacknowledged": st.UnackedBytes, "message_bytes_ram": st.ReadyBytes + st.UnackedBytes,
		"message_bytes_persistent": 0, "message_bytes_paged_out": 0,
		"memory": 0, "reductions": 0, "reductions_details": rate(0),
		"head_message_timestamp": nil,
		"message_stats": item{
			"publish": c.Published, "publish_details": rate(st.Rates.Publish),
			"deliver_get": c.Delivered, "deliver_get_details": rate(st.Rates.DeliverGet),
			"deliver":         c.Delivered - c.Got - c.DeliveredNoAck,
			"deliver_details": rate(0),
			"deliver_no_ack":  c.DeliveredNoAck, "deliver_no_ack_details": rate(0),
			"get": c.Got - c.GotNoAck, "get_details": rate(0),
			"get_no_ack": c.GotNoAck, "get_no_ack_details": rate(0),
			"get_empty": c.GetEmpty, "get_empty_details": rate(0),
			"redeliver": c.Redelivered, "redeliver_details": rate(st.Rates.Redeliver),
			"ack": c.Acked, "ack_details": rate(st.Rates.Ack),
		},
		// Ours: the ages RabbitMQ does not report, in seconds.
		"head_message_age_seconds":   st.HeadAge.Seconds(),
		"oldest_unacked_age_seconds": st.OldestUnackedAge.Seconds(),
		"garbage_collection":         gcStats{},
	}
	h.queueIdle.set(it, q, c.Published+c.Delivered+c.GetEmpty+c.Acked+c.Rejected+
		c.Expired+c.DeadLettered+c.Dropped)
	if st.HasHeadTimestamp {
		it["head_message_timestamp"] = st.HeadTimestamp
	}
	if q.Type() == "quorum" {
		// RabbitMQ's quorum queues add these: the dead-letters held until
		// their targets confirm them (at-least-once; 0 otherwise).
		it["messages_dlx"], it["message_bytes_dlx"] = st.DeadLetters, st.DeadLetterBytes
	}
	if lead, members, ok := q.QuorumGroup(); ok {
		h.quorumMembers(it, lead, members)
	} else if q.Type() == "quorum" {
		// RabbitMQ's quorum queue fields: a group of one, this node.
		it["leader"], it["members"], it["online"] = h.node, []string{h.node}, []string{h.node}
	}
	policy, operator, def := q.PolicyInfo()
	if policy != "" {
		it["policy"] = policy
	}
	if operator != "" {
		it["operator_policy"] = operator
	}
	if len(def) > 0 {
		it["effective_policy_definition"] = def
	}
	return it
}

// resource is one kind of object the API lists, reads, puts and deletes
// under /api/{kind}[/{vhost}[/{name}]].
type resource struct {
	// list is a vhost's objects as items.
	list func(v *broker.VHost) []item
	// get is one object's item (ok false: none).
	get func(v *broker.VHost, name string) (item, bool)
	// put and del change one (vhost and name from the path).
	put, del func(rq *request, vhost, name string) error
}

// serve answers a resource's paths.
func (h *Handler) serve(rq *request, res resource) error {
	s := rq.seg
	get := rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead
	switch {
	case len(s) == 3:
		switch {
		case get:
			v := h.readVHost(rq, s[1])
			if v == nil {
				return errNotFound()
			}
			it, ok := res.get(v, s[2])
			if !ok {
				return errNotFound()
			}
			writeJSON(rq.w, it)
			return nil
		case rq.r.Method == http.MethodPut:
			return res.put(rq, s[1], s[2])
		case rq.r.Method == http.MethodDelete:
			return res.del(rq, s[1], s[2])
		}
		return methodNotAllowed(rq, "HEAD, GET, PUT, DELETE, OPTIONS")
	case len(s) <= 2:
		return h.listAll(rq, res.list)
	}
	return errNotFound()
}

// queues serves /api/queues[/{vhost}[/{name}[/contents]]].
func (h *Handler) queues(rq *request) error {
	if ok, err := h.quorumReplicas(rq); ok {
		return err
	}
	if s := rq.seg; len(s) == 4 && s[3] == "bindings" {
		return h.objectBindings(rq, func(b broker.Binding) bool { return !b.ToExchange && b.Destination == s[2] },
			func(v *broker.VHost) bool { return v.Queue(s[2]) != nil })
	}
	if s := rq.seg; len(s) == 4 && s[3] == "get" {
		return h.getMessages(rq, s[1], s[2])
	}
	if s := rq.seg; len(s) == 4 && s[3] == "contents" {
		if rq.r.Method != http.MethodDelete {
			return methodNotAllowed(rq, "DELETE, OPTIONS")
		}
		return h.purgeQueue(rq, s[1], s[2])
	}
	rg, err := parseRanges(rq.r)
	if err != nil {
		return err
	}
	return h.serve(rq, resource{
		list: func(v *broker.VHost) []item {
			var items []item
			for _, q := range v.Queues() {
				st := q.Stats()
				it := h.queueItem(q, st)
				if rg.any() {
					h.queueRanges(it, q, st, rg)
				}
				items = append(items, it)
			}
			h.queueIdle.pruneGrown((*broker.Queue).Deleted)
			return items
		},
		get: func(v *broker.VHost, name string) (item, bool) {
			q := v.Queue(name)
			if q == nil {
				return nil, false
			}
			st := q.Stats()
			it := h.queueItem(q, st)
			if rg.any() {
				h.queueRanges(it, q, st, rg)
			}
			h.queueConsumers(it, q)
			return it, true
		},
		put: h.putQueue, del: h.deleteQueue,
	})
}

// listAll answers GET /api/{kind} (every visible vhost's objects) and
// /api/{kind}/{vhost}, with the list parameters.
func (h *Handler) listAll(rq *request, list func(v *broker.VHost) []item) error {
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	vhosts, err := h.listVHosts(rq, rq.seg)
	if err != nil {
		return err
	}
	var items []item
	for _, v := range vhosts {
		items = append(items, list(v)...)
	}
	return rq.reply(nonNil(items))
}

// listVHosts is every visible vhost for /api/X, or the one of /api/X/{v}.
func (h *Handler) listVHosts(rq *request, s []string) ([]*broker.VHost, error) {
	if len(s) == 1 {
		return h.visibleVHosts(rq), nil
	}
	v := h.readVHost(rq, s[1])
	if v == nil {
		return nil, errNotFound()
	}
	return []*broker.VHost{v}, nil
}

// exchangeItem is an exchange as RabbitMQ's /api/exchanges shows it.
func (h *Handler) exchangeItem(vhost string, x *broker.Exchange) item {
	it := item{
		"name": x.Name, "vhost": vhost, "type": x.Kind, "durable": x.Durable,
		"auto_delete": x.AutoDelete, "internal": x.Internal, "arguments": tableJSON(x.Args),
		"user_who_performed_action": "rmq-internal", "incoming": []item{}, "outgoing": []item{},
	}
	// As in RabbitMQ, only an exchange something was published to has
	// message_stats.
	if ms := h.exchangeStats(vhost, x); ms != nil {
		it["message_stats"] = ms
	}
	// RabbitMQ shows policy only when one applies.
	if p := x.Policy(); p != "" {
		it["policy"] = p
	}
	return it
}

// exchanges serves /api/exchanges[/{vhost}[/{name}]].
func (h *Handler) exchanges(rq *request) error {
	if s := rq.seg; len(s) == 4 && s[3] == "publish" {
		return h.publish(rq, s[1], s[2])
	}
	if s := rq.seg; len(s) == 5 && s[3] == "bindings" && (s[4] == "source" || s[4] == "destination") {
		src := s[4] == "source"
		return h.objectBindings(rq, func(b broker.Binding) bool {
			if src {
				return b.Source == s[2] && s[2] != ""
			}
			return b.ToExchange && b.Destination == s[2]
		}, func(v *broker.VHost) bool { return v.Exchange(s[2]) != nil })
	}
	rg, err := parseRanges(rq.r)
	if err != nil {
		return err
	}
	return h.serve(rq, resource{
		list: func(v *broker.VHost) []item {
			var items []item
			for _, x := range v.Exchanges() {
				it := h.exchangeItem(v.Name(), x)
				if rg.any() {
					h.exchangeRanges(it, xKey{v.Name(), x}, rg)
				}
				items = append(items, it)
			}
			h.forgetExchanges()
			return items
		},
		get: func(v *broker.VHost, name string) (item, bool) {
			x := v.Exchange(name)
			if x == nil {
				return nil, false
			}
			it := h.exchangeItem(v.Name(), x)
			if rg.any() {
				h.exchangeRanges(it, xKey{v.Name(), x}, rg)
			}
			return it, true
		},
		put: h.putExchange, del: h.deleteExchange,
	})
}

// objectBindings answers /api/queues/{v}/{q}/bindings and
// /api/exchanges/{v}/{x}/bindings/{source|destination}: the vhost's
// bindings that match, 404 when the object does not exist (RabbitMQ
// 3.10.8 lists a missing queue's implied default binding instead).
func (h *Handler) objectBindings(rq *request, match func(broker.Binding) bool, exists func(*broker.VHost) bool) error {
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	v := h.readVHost(rq, rq.seg[1])
	if v == nil || !exists(v) {
		return errNotFound()
	}
	var items []item
	for _, b := range v.Bindings() {
		if match(b) {
			items = append(items, bindingItem(v.Name(), b))
		}
	}
	return rq.reply(nonNil(items))
}

// propertiesKey is RabbitMQ's properties_key of a binding: the key
// quoted as a form value ('~' too), then "~" and a hash of the arguments
// when there are any; "~" alone for an empty key without arguments.
// Clients only echo it back, so the hash need only be stable.
func propertiesKey(key string, args amqp.Table) string {
	q := strings.ReplaceAll(url.QueryEscape(key), "~", "%7E")
	if len(args) == 0 {
		if q == "" {
			return "~"
		}
		return q
	}
	b, _ := json.Marshal(tableJSON(args)) // map keys sorted: stable
	f := fnv.New64a()
	f.Write(b)
	return q + "~" + base64.RawURLEncoding.EncodeToString(f.Sum(nil))
}

// bindingItem is a binding as RabbitMQ's /api/bindings shows it.
func bindingItem(vhost string, b broker.Binding) item {
	dt := "queue"
	if b.ToExchange {
		dt = "exchange"
	}
	return item{
		"source": b.Source, "vhost": vhost, "destination": b.Destination, "destination_type": dt,
		"routing_key": b.RoutingKey, "arguments": tableJSON(b.Arguments),
		"properties_key": propertiesKey(b.RoutingKey, b.Arguments),
	}
}

// bindings serves /api/bindings[/{vhost}[/e/{x}/{q|e}/{dest}[/{props}]]].
func (h *Handler) bindings(rq *request) error {
	s := rq.seg
	get := rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead
	switch {
	case len(s) <= 2:
		return h.listAll(rq, func(v *broker.VHost) []item {
			var items []item
			for _, b := range v.Bindings() {
				items = append(items, bindingItem(v.Name(), b))
			}
			return items
		})
	case (len(s) == 6 || len(s) == 7) && s[2] == "e" && (s[4] == "q" || s[4] == "e"):
		toX := s[4] == "e"
		if len(s) == 6 {
			switch {
			case get:
				v := h.readVHost(rq, s[1])
				if v == nil {
					return errNotFound()
				}
				items := []item{}
				for _, b := range v.Bindings() {
					if b.Source == s[3] && b.ToExchange == toX && b.Destination == s[5] {
						items = append(items, bindingItem(v.Name(), b))
					}
				}
				writeJSON(rq.w, items)
				return nil
			case rq.r.Method == http.MethodPost:
				return h.postBinding(rq, s[1], s[3], s[5], toX)
			}
			return methodNotAllowed(rq, "HEAD, GET, POST, OPTIONS")
		}
		switch {
		case get:
			v := h.readVHost(rq, s[1])
			if v == nil {
				return errNotFound()
			}
			b, ok := findBinding(v, s[3], s[5], toX, s[6])
			if !ok {
				return errNotFound()
			}
			writeJSON(rq.w, bindingItem(v.Name(), b))
			return nil
		case rq.r.Method == http.MethodDelete:
			return h.deleteBinding(rq, s[1], s[3], s[5], toX, s[6])
		}
		return methodNotAllowed(rq, "HEAD, GET, DELETE, OPTIONS")
	}
	return errNotFound()
}

// findBinding is the binding from src to dest with properties key props,
// the path segment unescaped: a client that put the key in the path as it
// is (rabbitmqadmin, curl) sends it unescaped once, one that escaped it
// (url.PathEscape) sends it as listed, so both forms match.
func findBinding(v *broker.VHost, src, dest string, toX bool, props string) (broker.Binding, bool) {
	for _, b := range v.Bindings() {
		if b.Source != src || b.ToExchange != toX || b.Destination != dest {
			continue
		}
		key := propertiesKey(b.RoutingKey, b.Arguments)
		if key == props {
			return b, true
		}
		if u, err := url.PathUnescape(key); err == nil && u == props {
			return b, true
		}
	}
	return broker.Binding{}, false
}

// vhostItem is a vhost as RabbitMQ's /api/vhosts shows it, with its
// queues' totals.
func (h *Handler) vhostItem(v *broker.VHost) item {
	desc, tags, dqt := "", []string{}, "undefined"
	if sv, ok := h.srv.Security().VHost(v.Name()); ok {
		desc = sv.Description
		if sv.Tags != nil {
			tags = sv.Tags
		}
		if sv.DefaultQueueType != "" {
			dqt = sv.DefaultQueueType
		}
	}
	var t totals
	for _, q := range v.Queues() {
		t.add(q.Stats())
	}
	it := item{
		"name": v.Name(), "description": desc, "tags": tags, "default_queue_type": dqt,
		"metadata": item{"description": desc, "tags": tags}, "tracing": false,
		"cluster_state": item{h.node: "running"},
	}
	t.into(it)
	it["message_stats"] = t.messageStats()
	return it
}

// totals sums queue stats for the overview and vhosts.
type totals struct {
	queues, consumers, ready, unacked int
	c                                 struct{ pub, del, got, gotNoAck, delNoAck, getEmpty, redel, ack uint64 }
	r                                 struct{ pub, del, redel, ack float64 }
}

func (t *totals) add(st broker.QueueStats) {
	t.queues++
	t.consumers += st.Consumers
	t.ready += st.Ready
	t.unacked += st.Unacked
	c := st.Counters
	t.c.pub += c.Published
	t.c.del += c.Delivered
	t.c.got += c.Got
	t.c.gotNoAck += c.GotNoAck
	t.c.delNoAck += c.DeliveredNoAck
	t.c.getEmpty += c.GetEmpty
	t.c.redel += c.Redelivered
	t.c.ack += c.Acked
	t.r.pub += st.Rates.Publish
	t.r.del += st.Rates.DeliverGet
	t.r.redel += st.Rates.Redeliver
	t.r.ack += st.Rates.Ack
}

// into sets the queue totals' fields of a vhost.
func (t *totals) into(it item) {
	it["messages"], it["messages_details"] = t.ready+t.unacked, rate(0)
	it["messages_ready"], it["messages_ready_details"] = t.ready, rate(0)
	it["messages_unacknowledged"], it["messages_unacknowledged_details"] = t.unacked, rate(0)
}

func (t *totals) messageStats() item {
	return item{
		"publish": t.c.pub, "publish_details": rate(t.r.pub),
		"deliver_get": t.c.del, "deliver_get_details": rate(t.r.del),
		"deliver": t.c.del - t.c.got - t.c.delNoAck, "deliver_details": rate(0),
		"deliver_no_ack": t.c.delNoAck, "deliver_no_ack_details": rate(0),
		"get": t.c.got - t.c.gotNoAck, "get_details": rate(0),
		"get_no_ack": t.c.gotNoAck, "get_no_ack_details": rate(0),
		"get_empty": t.c.getEmpty, "get_empty_details": rate(0),
		"redeliver": t.c.redel, "redeliver_details": rate(t.r.redel),
		"ack": t.c.ack, "ack_details": rate(t.r.ack),
	}
}

// overview is /api/overview, with samples per rg.
func (h *Handler) overview(rq *request, rg ranges) item {
	var t totals
	exchanges := 0
	vhosts := h.visibleVHosts(rq)
	for _, v := range vhosts {
		for _, q := range v.Queues() {
			t.add(q.Stats())
		}
		exchanges += len(v.Exchanges())
	}
	st := h.srv.Stats()
	qt := item{}
	t.into(qt)
	ms := t.messageStats()
	ms["confirm"], ms["confirm_details"] = st.MessagesConfirmed, rate(0)
	// Not counted here: unroutable messages by outcome, and RabbitMQ's
	// message-store reads and writes (the log's are in telemetry).
	for _, k := range []string{"drop_unroutable", "return_unroutable", "disk_reads", "disk_writes"} {
		ms[k], ms[k+"_details"] = 0, rate(0)
	}
	churn := item{}
	for _, k := range []string{"channel_closed", "channel_created", "connection_closed", "connection_created",
		"queue_created", "queue_declared", "queue_deleted"} {
		churn[k], churn[k+"_details"] = 0, rate(0)
	}
	listeners := []item{}
	for _, l := range h.ls {
		host, port := splitAddr(l.Addr)
		listeners = append(listeners, item{"node": h.node, "protocol": l.Protocol, "ip_address": host, "port": port})
	}
	types := []item{}
	for _, k := range []string{"direct", "fanout", "headers", "topic", "x-delayed-message"} {
		types = append(types, item{"name": k, "description": "", "enabled": true})
	}
	it := item{
		"management_version": RabbitMQVersion, "rates_mode": "basic", "exchange_types": types,
		"product_name": "AMQP-Go", "product_version": broker.Version, "rabbitmq_version": RabbitMQVersion,
		"cluster_name": h.cluster, "erlang_version": goVersion, "erlang_full_version": goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH,
		"release_series_support_status": "supported",
		"disable_stats":                 false, "enable_queue_totals": false, "default_queue_type": "classic",
		"message_stats": ms, "churn_rates": churn, "queue_totals": qt,
		"object_totals": item{"connections": st.Connections, "channels": st.Channels, "consumers": t.consumers,
			"exchanges": exchanges, "queues": t.queues},
		"statistics_db_event_queue": 0, "node": h.node, "listeners": listeners, "contexts": []item{},
		"sample_retention_policies": item{"global": []int{600, 3600, 28800, 86400}, "basic": []int{600, 3600}, "detailed": []int{600}},
	}
	if rg.any() {
		h.overviewRanges(it, qt, rg, vhosts)
	}
	return it
}

// splitAddr is a listener address's host and port.
func splitAddr(a net.Addr) (string, int) {
	if a == nil {
		return "", 0
	}
	host, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	port, _ := strconv.Atoi(p)
	if host == "" {
		host = "::"
	}
	return host, port
}

// nodeItem is this node as /api/nodes shows it (the fields a Go process
// can answer; see README for those not reported).
func (h *Handler) nodeItem() item {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := h.srv.Stats()
	alarms := h.srv.LocalAlarms()
	return item{
		"name": h.node, "type": "disc", "running": true, "os_pid": strconv.Itoa(os.Getpid()),
		"uptime": time.Since(h.started).Milliseconds(), "processors": runtime.NumCPU(),
		"rates_mode": "basic", "run_queue": 0, "net_ticktime": 60,
		"mem_used": ms.Sys, "mem_used_details": rate(0), "mem_limit": 0, "mem_alarm": alarms.Memory,
		"mem_calculation_strategy": "rss",
		"disk_free":                0, "disk_free_details": rate(0), "disk_free_limit": 0, "disk_free_alarm": alarms.Disk,
		"fd_used": 0, "fd_used_details": rate(0), "fd_total": 0,
		"sockets_used": st.Connections, "sockets_used_details": rate(0), "sockets_total": 0,
		"proc_used": runtime.NumGoroutine(), "proc_used_details": rate(0), "proc_total": 0,
		"partitions": []string{}, "applications": []item{}, "contexts": []item{},
		"auth_mechanisms": []item{}, "exchange_types": []item{}, "enabled_plugins": []string{"rabbitmq_management"},
		"cluster_links": []item{}, "log_files": []string{}, "config_files": []string{},
	}
}

// tableJSON turns AMQP field values into JSON ones, as RabbitMQ's
// management API shows arguments: byte arrays as strings, timestamps as
// seconds, decimals as numbers.
func tableJSON(t amqp.Table) item {
	out := make(item, len(t))
	for k, v := range t {
		out[k] = fieldJSON(v)
	}
	return out
}

func fieldJSON(v any) any {
	switch v := v.(type) {
	case amqp.Table:
		return tableJSON(v)
	case map[string]any:
		return tableJSON(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = fieldJSON(e)
		}
		return out
	case []byte:
		return string(v)
	case time.Time:
		return v.Unix()
	case amqp.Decimal:
		f, _ := strconv.ParseFloat(fmt.Sprintf("%de-%d", v.Value, v.Scale), 64)
		return f
	}
	return v
}
