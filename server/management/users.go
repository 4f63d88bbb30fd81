package management

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/amqp-go/amqp-go/server/security"
)

// Users, permissions and topic permissions, administrators only, as
// RabbitMQ 3.10.8 answers them (checked with curl), kept in the broker's
// security store (Server.Security), which persists them.

// needAdmin refuses a user without the administrator tag.
func needAdmin(rq *request) error {
	if !rq.user.HasTag(security.TagAdministrator) {
		return errNotAuthorised("Not administrator user")
	}
	return nil
}

func userItem(u security.UserDef) item {
	tags := []string(u.Tags)
	if tags == nil {
		tags = []string{}
	}
	limits := item{}
	for k, v := range u.Limits {
		limits[k] = v
	}
	alg := u.HashingAlgorithm
	if alg == "" {
		alg = security.HashSHA256
	}
	return item{"name": u.Name, "password_hash": u.PasswordHash, "hashing_algorithm": alg, "tags": tags, "limits": limits}
}

func permissionItem(p security.PermissionDef) item {
	return item{"user": p.User, "vhost": p.VHost, "configure": p.Configure, "write": p.Write, "read": p.Read}
}

func topicItem(p security.TopicPermissionDef) item {
	return item{"user": p.User, "vhost": p.VHost, "exchange": p.Exchange, "write": p.Write, "read": p.Read}
}

// permissionsWhere lists the permissions (topic permissions with topic)
// that match.
func (h *Handler) permissionsWhere(topic bool, match func(user, vhost string) bool) []item {
	d := h.srv.Security().Export()
	items := []item{}
	if topic {
		for _, p := range d.TopicPermissions {
			if match(p.User, p.VHost) {
				items = append(items, topicItem(p))
			}
		}
		return items
	}
	for _, p := range d.Permissions {
		if match(p.User, p.VHost) {
			items = append(items, permissionItem(p))
		}
	}
	return items
}

// users serves /api/users[/{user}[/permissions|/topic-permissions]].
func (h *Handler) users(rq *request) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	s := rq.seg
	switch {
	case len(s) == 2 && s[1] == "bulk-delete":
		return h.bulkDeleteUsers(rq)
	case len(s) == 1:
		if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		items := []item{}
		for _, u := range h.srv.Security().Export().Users {
			items = append(items, userItem(u))
		}
		return rq.reply(items)
	case len(s) == 2:
		switch rq.r.Method {
		case http.MethodGet, http.MethodHead:
			for _, u := range h.srv.Security().Export().Users {
				if u.Name == s[1] {
					writeJSON(rq.w, userItem(u))
					return nil
				}
			}
			return errNotFound()
		case http.MethodPut:
			return h.putUser(rq, s[1])
		case http.MethodDelete:
			if _, ok := h.srv.Security().User(s[1]); !ok {
				return errNotFound()
			}
			if err := h.srv.Security().DeleteUser(s[1]); err != nil {
				return errInternal(err)
			}
			rq.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return methodNotAllowed(rq, "HEAD, GET, PUT, DELETE, OPTIONS")
	case len(s) == 3 && (s[2] == "permissions" || s[2] == "topic-permissions"):
		if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
			return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
		}
		if _, ok := h.srv.Security().User(s[1]); !ok {
			return errNotFound()
		}
		return rq.reply(h.permissionsWhere(s[2] == "topic-permissions", func(u, _ string) bool { return u == s[1] }))
	}
	return errNotFound()
}

// bulkDeleteUsers is POST /api/users/bulk-delete {"users":[names]}, as
// RabbitMQ 3.10.8 answers it (checked with curl): the users are deleted
// in order (their connections closed, as by DELETE /api/users/{u}) until
// one does not exist, which stops it with 400 ["no_such_user", name],
// those before it deleted; 204 when all were. RabbitMQ answers a users
// value that is not a list with a 500; here it is a 400.
func (h *Handler) bulkDeleteUsers(rq *request) error {
	if rq.r.Method != http.MethodPost {
		return methodNotAllowed(rq, "POST, OPTIONS")
	}
	m, err := rq.body()
	if err != nil {
		return err
	}
	v, ok := m["users"]
	if !ok {
		return errBadRequest("[{key_missing,users}]")
	}
	list, ok := v.([]any)
	if !ok {
		return errBadRequest("users: not a list of user names")
	}
	sec := h.srv.Security()
	for _, n := range list {
		name, _ := n.(string)
		if _, ok := sec.User(name); !ok {
			return errBadRequest([]any{"no_such_user", fmt.Sprint(n)})
		}
		if err := sec.DeleteUser(name); err != nil {
			return errInternal(err)
		}
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// putUser creates or replaces a user: {"password":…} or
// {"password_hash":…,"hashing_algorithm":…}, and "tags" (a comma-separated
// string or an array), which RabbitMQ requires. Without either password
// field an existing user keeps its hash, a new one has none (no password
// login).
func (h *Handler) putUser(rq *request, name string) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	if m["tags"] == nil {
		return errBadRequest("tags_not_present")
	}
	tags, err := tagList(m["tags"])
	if err != nil {
		return err
	}
	f := fields{m: m}
	password, alg := f.string("password", ""), f.string("hashing_algorithm", security.HashSHA256)
	if f.err != nil {
		return f.err
	}
	sec := h.srv.Security()
	old, existed := sec.User(name)
	u := security.User{Name: name, Tags: tags, HashingAlgorithm: alg, Limits: old.Limits}
	switch hash, hasHash := m["password_hash"]; {
	case m["password"] != nil:
		if u.PasswordHash, err = security.HashPassword(alg, password); err != nil {
			return errBadRequest(err)
		}
	case hasHash:
		s, ok := hash.(string)
		if !ok {
			return errBadRequest("password_hash must be a string")
		}
		u.PasswordHash = s
	case existed:
		u.PasswordHash, u.HashingAlgorithm = old.PasswordHash, old.HashingAlgorithm
	}
	if err := sec.PutUser(u); err != nil {
		return errBadRequest(err)
	}
	created(rq.w, !existed)
	return nil
}

// permissions serves /api/permissions[/{vhost}/{user}] and, with topic,
// /api/topic-permissions[/{vhost}/{user}].
func (h *Handler) permissions(rq *request, topic bool) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	s := rq.seg
	get := rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead
	switch {
	case len(s) == 1 && get:
		return rq.reply(h.permissionsWhere(topic, func(string, string) bool { return true }))
	case len(s) == 3:
		vhost, user := s[1], s[2]
		mine := func(u, v string) bool { return u == user && v == vhost }
		switch {
		case get:
			items := h.permissionsWhere(topic, mine)
			if topic {
				writeJSON(rq.w, items) // RabbitMQ lists them, one per exchange
				return nil
			}
			if len(items) == 0 {
				return errNotFound()
			}
			writeJSON(rq.w, items[0])
			return nil
		case rq.r.Method == http.MethodPut:
			return h.putPermission(rq, vhost, user, topic)
		case rq.r.Method == http.MethodDelete:
			if len(h.permissionsWhere(topic, mine)) == 0 {
				return errNotFound()
			}
			var err error
			if topic {
				err = h.srv.Security().ClearTopicPermissions(user, vhost, "")
			} else {
				err = h.srv.Security().ClearPermissions(user, vhost)
			}
			if err != nil {
				return errInternal(err)
			}
			rq.w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return methodNotAllowed(rq, "HEAD, GET, PUT, DELETE, OPTIONS")
	case len(s) == 1:
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	return errNotFound()
}

// putPermission sets a user's permissions in a vhost (topic: on one
// exchange), every pattern required as RabbitMQ requires it.
func (h *Handler) putPermission(rq *request, vhost, user string, topic bool) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	keys := []string{"configure", "write", "read"}
	if topic {
		keys = []string{"exchange", "write", "read"}
	}
	var missing []string
	v := map[string]string{}
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			missing = append(missing, "{key_missing,"+k+"}")
			continue
		}
		v[k] = s
	}
	if missing != nil {
		return errBadRequest("[" + strings.Join(missing, ",") + "]")
	}
	for _, k := range []string{"configure", "write", "read"} {
		if p, ok := v[k]; ok {
			if _, err := regexp.Compile(p); err != nil {
				return errBadRequest([]any{"invalid_regexp", p, err.Error()})
			}
		}
	}
	sec := h.srv.Security()
	_, userOK := sec.User(user)
	_, vhostOK := sec.VHost(vhost)
	if !userOK || !vhostOK {
		return errBadRequest("vhost_or_user_not_found")
	}
	var existed bool
	if topic {
		existed = sec.HasTopicPermissions(user, vhost, v["exchange"])
		err = sec.SetTopicPermissions(security.TopicPermission{User: user, VHost: vhost, Exchange: v["exchange"], Write: v["write"], Read: v["read"]})
	} else {
		existed = sec.CanAccessVHost(user, vhost)
		err = sec.SetPermissions(security.Permission{User: user, VHost: vhost, Configure: v["configure"], Write: v["write"], Read: v["read"]})
	}
	if err != nil {
		return errBadRequest(err)
	}
	created(rq.w, !existed)
	return nil
}

// vhostPermissions serves /api/vhosts/{vhost}/permissions and
// /api/vhosts/{vhost}/topic-permissions.
func (h *Handler) vhostPermissions(rq *request) error {
	if err := needAdmin(rq); err != nil {
		return err
	}
	if _, ok := h.srv.Security().VHost(rq.seg[1]); !ok {
		return errNotFound()
	}
	return rq.reply(h.permissionsWhere(rq.seg[2] == "topic-permissions", func(_, v string) bool { return v == rq.seg[1] }))
}
