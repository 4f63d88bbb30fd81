package management

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/security"
)

// Policies and operator policies, as RabbitMQ 3.10.8 answers them
// (checked with curl): GET /api/{policies|operator-policies}[/{vhost}]
// lists those of the vhosts the user sees; GET, PUT and DELETE of
// …/{vhost}/{name} need policymaker or administrator and access to the
// vhost ("User not authorised to access object"), or administrator for
// operator policies ("Not administrator user"). PUT answers 201 or 204,
// DELETE 204; a refused definition is 400 "Validation failed" with
// RabbitMQ's text. The broker validates, stores and applies them.

// policyItem is a policy as RabbitMQ's API shows it.
func policyItem(p security.PolicyDef) item {
	def := p.Definition
	if def == nil {
		def = map[string]any{}
	}
	return item{"vhost": p.VHost, "name": p.Name, "pattern": p.Pattern, "apply-to": p.ApplyTo,
		"definition": def, "priority": p.Priority}
}

// policies serves /api/policies and, with operator, /api/operator-policies.
func (h *Handler) policies(rq *request, operator bool) error {
	s := rq.seg
	switch len(s) {
	case 1, 2:
		if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		if len(s) == 2 && h.srv.VHost(s[1]) != nil && !rq.seesAll() &&
			!h.srv.Security().CanAccessVHost(rq.user.Name, s[1]) {
			return errNotAuthorised("User not authorised to access virtual host")
		}
		vhosts, err := h.listVHosts(rq, s)
		if err != nil {
			return err
		}
		items := []item{}
		for _, v := range vhosts {
			ps := h.srv.Policies(v.Name(), operator)
			// RabbitMQ lists a vhost's policies by priority, lowest first.
			slices.SortStableFunc(ps, func(a, b security.PolicyDef) int { return cmp.Compare(a.Priority, b.Priority) })
			for _, p := range ps {
				items = append(items, policyItem(p))
			}
		}
		return rq.reply(items)
	case 3:
	default:
		return errNotFound()
	}
	vhost, name := s[1], s[2]
	if err := h.policyAuthorized(rq, vhost, operator); err != nil {
		return err
	}
	switch rq.r.Method {
	case http.MethodGet, http.MethodHead:
		for _, p := range h.srv.Policies(vhost, operator) {
			if p.Name == name {
				writeJSON(rq.w, policyItem(p))
				return nil
			}
		}
		return errNotFound()
	case http.MethodPut:
		return h.putPolicy(rq, vhost, name, operator)
	case http.MethodDelete:
		err := h.srv.DeletePolicy(vhost, name, operator)
		if errors.Is(err, broker.ErrPolicyNotFound) {
			return errNotFound()
		}
		if err != nil {
			return err
		}
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(rq, "HEAD, GET, PUT, DELETE, OPTIONS")
}

// policyAuthorized is RabbitMQ's check for one policy: administrator for
// an operator policy; policymaker or administrator with access to the
// vhost for a policy.
func (h *Handler) policyAuthorized(rq *request, vhost string, operator bool) error {
	if operator {
		return needAdmin(rq)
	}
	u := rq.user
	if !u.HasTag(security.TagAdministrator) && !u.HasTag(security.TagPolicymaker) ||
		!u.HasTag(security.TagAdministrator) && !h.srv.Security().CanAccessVHost(u.Name, vhost) {
		return errNotAuthorised("User not authorised to access object")
	}
	return nil
}

// putPolicy creates or replaces a policy from {pattern, definition,
// priority, apply-to}.
func (h *Handler) putPolicy(rq *request, vhost, name string, operator bool) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	if err := requireKeys(m, "pattern", "definition"); err != nil {
		return err
	}
	if h.srv.VHost(vhost) == nil {
		return &apiError{http.StatusNotFound, "not_found", "vhost_not_found"}
	}
	invalid := func(text string) error {
		reason := "Validation failed\n\n" + text + "\n"
		if !operator {
			// RabbitMQ escapes its policy texts as HTML, not its
			// operator policy ones.
			reason = strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(reason)
		}
		return errBadRequest(reason)
	}
	p := security.PolicyDef{VHost: vhost, Name: name}
	var ok bool
	if p.Pattern, ok = m["pattern"].(string); !ok {
		return invalid("pattern should be a string, actually was " + erlangValue(m["pattern"]))
	}
	if p.Definition, ok = m["definition"].(map[string]any); !ok {
		return invalid("definition should be a JSON object, actually was " + erlangValue(m["definition"]))
	}
	if v, given := m["apply-to"]; given {
		if p.ApplyTo, ok = v.(string); !ok {
			return invalid("apply-to should be a string, actually was " + erlangValue(v))
		}
	}
	if v, given := m["priority"]; given && v != nil {
		n, isNum := v.(json.Number)
		prio, err := n.Int64()
		if !isNum || err != nil {
			return invalid("priority should be a number, actually was " + erlangValue(v))
		}
		p.Priority = int(prio)
	}
	isNew, err := h.srv.PutPolicy(p, operator)
	var pe *broker.PolicyError
	switch {
	case errors.As(err, &pe):
		return invalid(pe.Text)
	case errors.Is(err, security.ErrNotFound):
		return &apiError{http.StatusNotFound, "not_found", "vhost_not_found"}
	case err != nil:
		return errInternal(err)
	}
	created(rq.w, isNew)
	return nil
}

// erlangValue renders a JSON value as RabbitMQ's texts print it.
func erlangValue(v any) string { return broker.ErlangTerm(v) }
