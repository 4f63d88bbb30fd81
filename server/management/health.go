package management

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/amqp-go/amqp-go/server/broker"
)

// Health checks, as RabbitMQ 3.10.8 answers them (checked with curl):
// 200 {"status":"ok",…} or 503 {"status":"failed","reason":…,…}.

// failed answers a failed check.
func failed(w http.ResponseWriter, body item) {
	body["status"] = "failed"
	b, _ := appendJSON(nil, body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(b)
}

// health serves /api/health/checks/{alarms,local-alarms,virtual-hosts,
// port-listener/{port},protocol-listener/{name}}.
func (h *Handler) health(rq *request) error {
	s := rq.seg
	if len(s) < 3 || s[1] != "checks" {
		return errNotFound()
	}
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	switch {
	case len(s) == 3 && (s[2] == "alarms" || s[2] == "local-alarms"):
		alarms, err := h.alarmItems(rq, s[2] == "alarms")
		if err != nil {
			return err
		}
		if len(alarms) > 0 {
			reason := "There are alarms in effect in the cluster"
			if s[2] == "local-alarms" {
				reason = "There are alarms in effect on the node"
			}
			failed(rq.w, item{"reason": reason, "alarms": alarms})
			return nil
		}
		writeJSON(rq.w, item{"status": "ok"})
	case len(s) == 3 && s[2] == "virtual-hosts":
		writeJSON(rq.w, item{"status": "ok"}) // every vhost runs while the node does
	case len(s) == 4 && s[2] == "port-listener":
		port, err := strconv.Atoi(s[3])
		if err != nil {
			return errBadRequest("Invalid port")
		}
		ports := []any{}
		for _, a := range h.listenerAddrs(rq) {
			_, p := splitAddr(a.Addr)
			if p == port {
				writeJSON(rq.w, item{"status": "ok", "port": port})
				return nil
			}
			ports = append(ports, p)
		}
		failed(rq.w, item{"reason": "No active listener", "missing": port, "ports": ports})
	case len(s) == 4 && s[2] == "protocol-listener":
		want := protocolName(s[3])
		protocols := []any{}
		for _, a := range h.listenerAddrs(rq) {
			if a.Protocol == want {
				writeJSON(rq.w, item{"status": "ok", "protocol": want})
				return nil
			}
			protocols = append(protocols, a.Protocol)
		}
		failed(rq.w, item{"reason": "No active listener", "missing": s[3], "protocols": protocols})
	default:
		return errNotFound()
	}
	return nil
}

// alarmItems are the alarms in effect, as RabbitMQ lists them: this
// node's, and with cluster those of the other members it reaches (the
// ones that block its publishers too; RabbitMQ forgets a node's alarms
// when the node goes down).
func (h *Handler) alarmItems(rq *request, cluster bool) ([]item, error) {
	alarms := nodeAlarmItems(h.node, h.srv.LocalAlarms())
	if !cluster || h.members == nil {
		return alarms, nil
	}
	st, err := h.members(rq.r.Context())
	if err != nil {
		return nil, &apiError{http.StatusServiceUnavailable, "cluster_unavailable", err.Error()}
	}
	for _, m := range st.Members {
		if !m.Self && m.Reachable {
			alarms = append(alarms, nodeAlarmItems(m.Name, h.srv.MemberAlarms(m.ID))...)
		}
	}
	return alarms, nil
}

// nodeAlarmItems are a node's alarms with RabbitMQ's names of their
// resources ("memory", "disk space"; a message store failure is ours).
func nodeAlarmItems(node string, a broker.NodeAlarms) []item {
	var out []item
	if a.Memory {
		out = append(out, item{"node": node, "resource": "memory"})
	}
	if a.Disk {
		out = append(out, item{"node": node, "resource": "disk space"})
	}
	if a.StoreFailed {
		out = append(out, item{"node": node, "resource": "message store failure"})
	}
	return out
}

// listenerAddrs are the AMQP listeners and this HTTP one.
func (h *Handler) listenerAddrs(rq *request) []Listener {
	ls := append([]Listener{}, h.ls...)
	if a, ok := rq.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		proto := "http"
		if rq.r.TLS != nil {
			proto = "https" // as protocolName names https and http/ssl
		}
		ls = append(ls, Listener{Protocol: proto, Addr: a})
	}
	return ls
}

// protocolName normalises a protocol as RabbitMQ's check does (amqp091,
// amqp0-9-1 and the like are amqp; amqps is amqp/ssl).
func protocolName(p string) string {
	switch strings.ToLower(p) {
	case "amqp091", "amqp0-9-1", "amqp0.9.1", "amqp0-9", "amqp0.9", "amqp09", "amqp":
		return "amqp"
	case "amqps", "amqp/ssl":
		return "amqp/ssl"
	case "https", "http/ssl":
		return "https"
	}
	return strings.ToLower(p)
}
