package management

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// noProperties is a message without properties.
var noProperties amqp.Properties

// Vhost and user limits, administrators only, as RabbitMQ 3.10.8 answers
// them (checked with curl): GET /api/vhost-limits[/{vhost}] and
// /api/user-limits[/{user}] list [{vhost|user, value:{limit:n}}] (only
// those with a limit set); PUT …/{name}/{limit} with {"value":n} and
// DELETE answer 204 (a delete of an unset limit too). Kept in the security
// store, which the broker enforces them from.

// limits serves /api/vhost-limits and, with user, /api/user-limits.
func (h *Handler) limits(rq *request, user bool) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	s := rq.seg
	kind := "vhost"
	if user {
		kind = "user"
	}
	switch {
	case len(s) <= 2:
		if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		d := h.srv.Security().Export()
		items := []item{}
		add := func(name string, limits map[string]int64) {
			if len(limits) > 0 && (len(s) == 1 || s[1] == name) {
				value := item{}
				for k, n := range limits {
					value[k] = n
				}
				items = append(items, item{kind: name, "value": value})
			}
		}
		if user {
			for _, u := range d.Users {
				add(u.Name, u.Limits)
			}
		} else {
			for _, v := range h.srv.Security().VHostNames() {
				sv, _ := h.srv.Security().VHost(v)
				add(v, sv.Limits)
			}
		}
		writeJSON(rq.w, items)
		return nil
	case len(s) == 3:
		name, limit := s[1], s[2]
		sec := h.srv.Security()
		if _, ok := sec.User(name); user && !ok {
			return errBadRequest([]any{"no_such_user", name})
		}
		if _, ok := sec.VHost(name); !user && !ok {
			return &apiError{http.StatusNotFound, "not_found", "vhost_not_found"}
		}
		set := sec.SetVHostLimit
		if user {
			set = sec.SetUserLimit
		}
		switch rq.r.Method {
		case http.MethodPut:
			m, err := rq.body()
			if err != nil {
				return err
			}
			if err := requireKeys(m, "value"); err != nil {
				return err
			}
			n, ok := m["value"].(json.Number)
			v, err := n.Int64()
			if !ok || err != nil {
				return errBadRequest(fmt.Sprintf("Validation failed\n\n%s should be a number, actually was %v\n", limit, m["value"]))
			}
			if !knownLimit(limit, user) {
				return errBadRequest(fmt.Sprintf("Validation failed\n\nUnrecognised terms [{<<\"%s\">>,%d}] in %s-limits\n", limit, v, kind))
			}
			if err := set(name, limit, v); err != nil {
				return errBadRequest(err)
			}
		case http.MethodDelete:
			if knownLimit(limit, user) {
				if err := set(name, limit, -1); err != nil {
					return errBadRequest(err)
				}
			}
		default:
			return methodNotAllowed(rq, "PUT, DELETE, OPTIONS")
		}
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errNotFound()
}

// knownLimit reports whether limit is a vhost's (max-connections,
// max-queues) or, with user, a user's (max-connections, max-channels).
func knownLimit(limit string, user bool) bool {
	if user {
		return limit == security.LimitMaxConnections || limit == security.LimitMaxChannels
	}
	return limit == security.LimitMaxConnections || limit == security.LimitMaxQueues
}

// aliveness serves GET /api/aliveness-test/{vhost} as RabbitMQ does:
// declare the queue aliveness-test, publish a message to it and get it
// back; {"status":"ok"}, or 503 with the reason.
func (h *Handler) aliveness(rq *request) error {
	if len(rq.seg) != 2 {
		return errNotFound()
	}
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	vhost := rq.seg[1]
	v := h.readVHost(rq, vhost)
	if v == nil {
		return errNotFound()
	}
	if !h.srv.Security().CanAccessVHost(rq.user.Name, vhost) {
		return errNotAuthorised("User not authorised to access virtual host")
	}
	const q = "aliveness-test"
	if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: q}); err != nil {
		failed(rq.w, item{"reason": err.Error()})
		return nil
	}
	body := []byte("test_message")
	if _, err := v.PublishMessage(rq.user.Name, "", q, noProperties, body); err != nil {
		failed(rq.w, item{"reason": err.Error()})
		return nil
	}
	got, err := v.GetMessages(q, 1, broker.GetAck)
	if err != nil || len(got) != 1 || string(got[0].Body) != string(body) {
		failed(rq.w, item{"reason": fmt.Sprintf("the test message did not come back (%v)", err)})
		return nil
	}
	writeJSON(rq.w, item{"status": "ok"})
	return nil
}
