package management

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/amqp-go/amqp-go/server/monitor"
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
		// One node: the cluster's alarms are this node's.
		if reason := h.srv.Stats().Alarm; reason != "" {
			var alarms []item
			for _, r := range strings.Split(reason, " & ") {
				alarms = append(alarms, item{"node": h.node, "resource": alarmResource(r)})
			}
			failed(rq.w, item{"reason": "resource alarm(s) in effect in the cluster", "alarms": alarms})
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

// alarmResource is RabbitMQ's name of an alarm's resource.
func alarmResource(reason string) string {
	switch reason {
	case monitor.MemoryReason:
		return "memory"
	case monitor.DiskReason:
		return "disk"
	}
	return reason
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
