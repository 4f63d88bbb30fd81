package management

import (
	"net/http"
	"strings"

	"github.com/amqp-go/amqp-go/server/security"
)

// putVHost creates or updates a vhost: PUT /api/vhosts/{name} with
// description, tags (a comma-separated string or an array),
// default_queue_type and tracing, administrators only. As in RabbitMQ
// 3.10.8 (checked with curl) an update replaces the metadata (fields
// left out are cleared; limits and policies stay), and the user who
// creates a vhost gets every permission in it.
func (h *Handler) putVHost(rq *request, name string) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	m, err := rq.body()
	if err != nil {
		return err
	}
	f := fields{m: m}
	desc, dqt := f.string("description", ""), f.string("default_queue_type", "")
	f.bool("tracing", false) // checked, as RabbitMQ does; tracing is not supported
	if f.err != nil {
		return f.err
	}
	tags, err := tagList(m["tags"])
	if err != nil {
		return err
	}
	if !knownQueueType(dqt) {
		dqt = "" // RabbitMQ 3.10.8 keeps no default it does not know (shown as "undefined")
	}
	sec := h.srv.Security()
	v, existed := sec.VHost(name) // a copy: its limits and policies are kept
	v.Name, v.Description, v.Tags, v.DefaultQueueType = name, desc, tags, dqt
	if err := sec.PutVHost(v); err != nil {
		return errBadRequest(err)
	}
	if !existed {
		if err := sec.SetPermissions(security.Permission{User: rq.user.Name, VHost: name,
			Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			return errInternal(err)
		}
	}
	created(rq.w, !existed)
	return nil
}

// knownQueueType reports whether t is a queue type RabbitMQ 3.10 knows,
// which a vhost's default_queue_type may be.
func knownQueueType(t string) bool { return t == "classic" || t == "quorum" || t == "stream" }

// deleteVHost deletes a vhost with everything in it
// ((*broker.Server).DeleteVHost: its connections are closed with 320).
func (h *Handler) deleteVHost(rq *request, name string) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	if _, ok := h.srv.Security().VHost(name); !ok {
		return errNotFound()
	}
	if err := h.srv.DeleteVHost(name); err != nil {
		return errInternal(err)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// tagList reads tags as RabbitMQ takes them: a comma-separated string
// or an array of strings (nil: none).
func tagList(v any) ([]string, error) {
	var tags []string
	switch t := v.(type) {
	case nil:
	case string:
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				tags = append(tags, p)
			}
		}
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, errBadRequest("tags must be strings")
			}
			tags = append(tags, s)
		}
	default:
		return nil, errBadRequest("tags must be a string or an array")
	}
	return tags, nil
}
