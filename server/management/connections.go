package management

import (
	"net/http"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// closeReason is RabbitMQ's reason for a connection closed here without
// an X-Reason header.
const closeReason = "Closed via management plugin"

// connectionItem is a connection as RabbitMQ's /api/connections shows it;
// channels is its open channels' count, rates its byte counters' current
// rates (sampleConnections). reductions is Erlang's and stays 0.
func (h *Handler) connectionItem(c *broker.ConnInfo, channels int, rates map[string]float64) item {
	host, port := splitAddr(c.Local)
	peerHost, peerPort := splitAddr(c.Peer)
	n := c.Counters()
	it := item{
		"name": c.Name, "node": h.node, "type": "network", "state": "running", "protocol": "AMQP 0-9-1",
		"user": c.User, "user_who_performed_action": c.User, "vhost": c.VHost,
		"connected_at": c.ConnectedAt.UnixMilli(), "host": host, "port": port,
		"peer_host": peerHost, "peer_port": peerPort, "ssl": c.TLS, "auth_mechanism": c.AuthMechanism,
		"channel_max": int(c.ChannelMax), "frame_max": int64(c.FrameMax), "timeout": int64(c.Heartbeat.Seconds()),
		"client_properties": tableJSON(c.ClientProperties()), "channels": channels,
		"garbage_collection": gcStats{},
		"recv_oct":           n.RecvOct, "recv_cnt": n.RecvCnt, "send_oct": n.SendOct, "send_cnt": n.SendCnt,
		"send_pend": n.SendPend, "recv_oct_details": rate(rates["recv_oct"]),
		"send_oct_details": rate(rates["send_oct"]), "reductions": 0, "reductions_details": rate(0),
	}
	if c.ConnectionName != "" {
		it["user_provided_name"] = c.ConnectionName // RabbitMQ's, only when the client names it
	}
	for _, k := range []string{"ssl_protocol", "ssl_key_exchange", "ssl_cipher", "ssl_hash",
		"peer_cert_subject", "peer_cert_issuer", "peer_cert_validity"} {
		it[k] = nil
	}
	return it
}

// connectionRates samples c's byte counters and returns their current
// rates (nil until a second sample). Listings prune the samples of closed
// connections.
func (h *Handler) connectionRates(c *broker.ConnInfo) map[string]float64 {
	n := c.Counters()
	return h.connRates.sample(time.Now(), h.srv.StatsInterval(), c,
		map[string]uint64{"recv_oct": n.RecvOct, "send_oct": n.SendOct})
}

// seesConnection reports whether the user may see a connection: its own,
// or any for administrators and monitoring users, as in RabbitMQ.
func (rq *request) seesConnection(c *broker.ConnInfo) bool {
	return rq.seesAll() || c.User == rq.user.Name
}

// connections serves /api/connections[/{name}] and
// /api/vhosts/{vhost}/connections (vhost set).
func (h *Handler) connections(rq *request, vhost *string) error {
	s := rq.seg
	get := rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead
	if vhost != nil || len(s) == 1 {
		if !get {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		if vhost != nil && h.readVHost(rq, *vhost) == nil {
			return errNotFound()
		}
		items := []item{}
		counts := h.channelCounts()
		conns := h.srv.Connections()
		open := make(map[*broker.ConnInfo]bool, len(conns))
		for _, c := range conns {
			open[c] = true
			if rq.seesConnection(c) && (vhost == nil || c.VHost == *vhost) {
				items = append(items, h.connectionItem(c, counts[c], h.connectionRates(c)))
			}
		}
		h.connRates.prune(func(c *broker.ConnInfo) bool { return !open[c] })
		return rq.reply(items)
	}
	if len(s) != 2 {
		return errNotFound()
	}
	var found *broker.ConnInfo
	for _, c := range h.srv.Connections() {
		if c.Name == s[1] && rq.seesConnection(c) {
			found = c
		}
	}
	if found == nil {
		return errNotFound()
	}
	switch {
	case get:
		writeJSON(rq.w, h.connectionItem(found, h.channelCounts()[found], h.connectionRates(found)))
		return nil
	case rq.r.Method == http.MethodDelete:
		// Monitoring users see every connection but close only their own.
		if !rq.user.HasTag("administrator") && found.User != rq.user.Name {
			return errNotAuthorised("User not authorised to access object")
		}
		reason := rq.r.Header.Get("X-Reason")
		if reason == "" {
			reason = closeReason
		}
		if !h.srv.CloseConnection(found.Name, reason) {
			return errNotFound()
		}
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(rq, "HEAD, GET, DELETE, OPTIONS")
}

// channelCounts is the number of open channels of each connection.
func (h *Handler) channelCounts() map[*broker.ConnInfo]int {
	counts := map[*broker.ConnInfo]int{}
	for _, ch := range h.srv.Channels() {
		counts[ch.Conn]++
	}
	return counts
}
