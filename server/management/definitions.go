package management

import (
	"encoding/json"
	"net/http"

	"github.com/amqp-go/amqp-go/server/security"
)

// Definitions, administrators only, as RabbitMQ 3.10.8 answers them
// (checked with curl): GET exports (Server.ExportDefinitions: users,
// vhosts, permissions, topic permissions, policies, durable exchanges,
// queues and bindings), POST imports (Server.ImportDefinitions) and
// answers 204; per vhost, the export has only that vhost's parameters,
// policies, exchanges, queues and bindings, without their vhost field, and
// an import puts every object in that vhost. Not yet: multipart uploads
// (the UI's form) and ?download=.

// definitions serves /api/definitions[/{vhost}].
func (h *Handler) definitions(rq *request) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	s := rq.seg
	if len(s) > 2 {
		return errNotFound()
	}
	var vhost string
	if len(s) == 2 {
		vhost = s[1]
		if _, ok := h.srv.Security().VHost(vhost); !ok {
			return errBadRequest("vhost_not_found")
		}
	}
	switch rq.r.Method {
	case http.MethodGet, http.MethodHead:
		d := h.srv.ExportDefinitions()
		if len(s) == 1 {
			writeJSON(rq.w, d)
			return nil
		}
		out := item{"rabbit_version": d.RabbitVersion}
		for k, list := range map[string]any{"parameters": d.Parameters, "policies": d.Policies,
			"queues": d.Queues, "exchanges": d.Exchanges, "bindings": d.Bindings} {
			items, err := ofVHost(list, vhost)
			if err != nil {
				return err
			}
			out[k] = items
		}
		writeJSON(rq.w, out)
		return nil
	case http.MethodPost:
		// The same reader as the CLI's import: numbers kept exact.
		d, err := security.ReadDefinitions(rq.r.Body)
		if err != nil {
			return bodyError(err, "failed_to_parse_json")
		}
		if len(s) == 2 {
			intoVHost(d, vhost)
		}
		if err := h.srv.ImportDefinitions(d); err != nil {
			return errBadRequest(err)
		}
		rq.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return methodNotAllowed(rq, "HEAD, GET, POST, OPTIONS")
}

// ofVHost keeps the definitions of one vhost, as JSON objects without
// their vhost field.
func ofVHost(list any, vhost string) ([]item, error) {
	b, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	var all []item
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	out := []item{}
	for _, it := range all {
		if it["vhost"] == vhost {
			delete(it, "vhost")
			out = append(out, it)
		}
	}
	return out, nil
}

// intoVHost puts every vhost-scoped object of d into vhost (a per-vhost
// import names no vhost, or may name another) and drops the rest: users,
// vhosts and permissions are not a vhost's to import.
func intoVHost(d *security.Definitions, vhost string) {
	d.Users, d.VHosts, d.Permissions, d.TopicPermissions, d.GlobalParameters = nil, nil, nil, nil, nil
	for i := range d.Queues {
		d.Queues[i].VHost = vhost
	}
	for i := range d.Exchanges {
		d.Exchanges[i].VHost = vhost
	}
	for i := range d.Bindings {
		d.Bindings[i].VHost = vhost
	}
	for i := range d.Policies {
		d.Policies[i].VHost = vhost
	}
	for i := range d.Parameters {
		d.Parameters[i].VHost = vhost
	}
}
