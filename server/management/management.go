// Package management serves RabbitMQ's management HTTP API (the
// rabbitmq_management plugin's /api) over the broker, so that
// rabbitmqadmin, the Terraform provider, monitoring agents and scripts
// work unchanged: the same paths, JSON fields, status codes and error
// bodies as RabbitMQ 3.10.
//
// Routing is on r.URL.EscapedPath(), each segment unescaped here: a vhost
// "/" arrives as %2F, which Go's ServeMux patterns do not match.
//
// Auth is HTTP basic against the broker's users
// ((*broker.Server).AuthenticateUser). A user needs a management tag
// (administrator, monitoring, policymaker or management), or it gets 401
// as in RabbitMQ; loopback_users apply here as on AMQP. administrator and
// monitoring see every vhost; management and policymaker see the vhosts
// they have permissions in. Changes need the user's vhost access and go
// through (*broker.VHost).Apply, the broker's one path for definitions.
//
// Listings are built from (*broker.Queue).Stats, the queues' incremental
// counters; nothing walks messages.
//
// Goroutines: see goroutines.md beside this file.
package management

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/security"
)

// RabbitMQVersion is the RabbitMQ release whose API this one follows,
// reported as rabbitmq_version and management_version: clients compare
// it (the Terraform provider refuses versions below 3.7).
const RabbitMQVersion = "3.10.8"

// maxBody caps a request body, RabbitMQ's management.http.max_body_size
// default (20 MiB) being far more than any one object needs; a
// definitions import gets that whole default (maxDefinitionsBody), as an
// export of some 7,000 queues is already over 1 MiB.
const (
	maxBody            = 1 << 20
	maxDefinitionsBody = 20 << 20
)

// Options is what the API reports on.
type Options struct {
	Server *broker.Server
	// Node is the node name reported in node fields (default
	// "amqp-go@" and the host name).
	Node string
	// Listeners are the protocol listeners /api/overview reports.
	Listeners []Listener
	// ClusterName is cluster_name (default: Node).
	ClusterName string
	// Cluster reports the cluster when this node is in one (nil: a
	// single node): /api/nodes lists every member, and
	// /api/cluster-status (ours, not RabbitMQ's) shows it whole.
	Cluster func(context.Context) (cluster.Status, error)
	// Membership changes the cluster's members (nil: a single node):
	// POST /api/cluster-members and DELETE /api/cluster-members/{name},
	// ours, not RabbitMQ's (which has no such API).
	Membership Membership
}

// Membership adds and removes cluster members; cluster.Service with the
// node id derived from the name is one.
type Membership interface {
	AddMember(ctx context.Context, name, address string) error
	RemoveMember(ctx context.Context, name string) error
}

// Listener is one listener as /api/overview lists it.
type Listener struct {
	Protocol string // "amqp", "amqp/ssl", "http"
	Addr     net.Addr
}

// Handler is the API's http.Handler; safe for concurrent use.
type Handler struct {
	srv     *broker.Server
	node    string
	cluster string
	ls      []Listener
	started time.Time
	members func(context.Context) (cluster.Status, error) // nil: a single node
	changes Membership                                    // nil: a single node
	// chanRates and xRates sample the channels' and the exchanges'
	// counters for their rates (chanrates.go).
	chanRates counterRates[chanKey]
	// connRates sample the connections' byte counters (recv_oct,
	// send_oct).
	connRates counterRates[*broker.ConnInfo]
	xRates    counterRates[xKey]
	// destRates sample a channel's counters per exchange and per queue
	// (channelDests).
	destRates counterRates[destKey]
	// chanIdle and queueIdle give channels and queues their idle_since
	// (idle.go).
	chanIdle  idleTracker[chanKey]
	queueIdle idleTracker[*broker.Queue]
	// hist are the sampled histories the range parameters read
	// (history.go).
	hist histories
}

// New makes the API's handler over o.Server and starts the sampling of
// its history (history.go), which Close stops.
func New(o Options) *Handler {
	h := &Handler{srv: o.Server, node: o.Node, cluster: o.ClusterName, ls: o.Listeners, started: time.Now(), members: o.Cluster, changes: o.Membership}
	if h.node == "" {
		host, _ := osHostname()
		h.node = "amqp-go@" + host
	}
	if h.cluster == "" {
		h.cluster = h.node
	}
	h.startHistory()
	return h
}

// request is one authenticated call.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	user security.User
	// seg are the path's segments after /api, unescaped.
	seg []string
}

// apiError is an error reply: status, RabbitMQ's error and reason.
type apiError struct {
	status int
	kind   string
	reason any
}

func (e *apiError) Error() string { return e.kind }

func errNotFound() *apiError {
	return &apiError{http.StatusNotFound, "Object Not Found", "Not Found"}
}

// errBadRequest is a 400 with reason, an error's text for an error; a
// change the cluster did not take is clusterRefusal's 503 instead.
func errBadRequest(reason any) *apiError {
	if err, ok := reason.(error); ok {
		if refused := clusterRefusal(err); refused != nil {
			return refused
		}
		reason = err.Error()
	}
	return &apiError{http.StatusBadRequest, "bad_request", reason}
}

// clusterRefusal is the reply to a change the cluster did not take (no
// majority): 503, so that a client knows to retry, or to try another
// node; nil for any other error.
func clusterRefusal(err error) *apiError {
	if !errors.Is(err, broker.ErrNoMajority) {
		return nil
	}
	return &apiError{http.StatusServiceUnavailable, "service_unavailable", err.Error()}
}

func errNotAuthorised(reason string) *apiError {
	return &apiError{http.StatusUnauthorized, "not_authorised", reason}
}

// ServeHTTP authenticates the request and routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	if isUIPath(r.URL.Path) {
		serveUI(w, r)
		return
	}
	seg, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		writeError(w, errNotFound())
		return
	}
	user, aerr := h.authenticate(r)
	if aerr != nil {
		// The UI's requests (X-Requested-With) get no challenge, so that
		// the browser shows the UI's login form, not its own prompt.
		if aerr.kind == "not_authorized" && r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
			w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
		}
		writeError(w, aerr)
		return
	}
	rq := &request{w: w, r: r, user: user, seg: seg}
	if r.Body != nil {
		limit := int64(maxBody)
		if len(seg) > 0 && seg[0] == "definitions" {
			limit = maxDefinitionsBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	if err := h.route(rq); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			if ae = clusterRefusal(err); ae == nil {
				ae = errInternal(err)
			}
		}
		writeError(w, ae)
	}
}

// splitPath returns the unescaped segments of an escaped path under /api/
// (a trailing slash, as in GET /api/connections/, is dropped); ok is false
// outside /api or for a bad escape.
func splitPath(p string) ([]string, bool) {
	rest, ok := strings.CutPrefix(p, "/api")
	if !ok || (rest != "" && rest[0] != '/') {
		return nil, false
	}
	rest = strings.TrimPrefix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return []string{}, true
	}
	raw := strings.Split(rest, "/")
	seg := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		seg[i] = u
	}
	return seg, true
}

// managementTags are the tags that let a user into the API.
var managementTags = []string{"administrator", "monitoring", "policymaker", "management"}

// authenticate checks basic auth with RabbitMQ's refusals: bad or missing
// credentials are not_authorized "Login failed"; a loopback-only user from
// elsewhere and a user without a management tag are not_authorised.
func (h *Handler) authenticate(r *http.Request) (security.User, *apiError) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return security.User{}, &apiError{http.StatusUnauthorized, "not_authorized", "Login failed"}
	}
	u, ok := h.srv.AuthenticateUser(name, pass)
	if !ok {
		return security.User{}, &apiError{http.StatusUnauthorized, "not_authorized", "Login failed"}
	}
	if !h.srv.LoopbackAllowed(name, remoteAddr(r)) {
		return security.User{}, errNotAuthorised("User can only log in via localhost")
	}
	for _, t := range managementTags {
		if u.HasTag(t) {
			return u, nil
		}
	}
	return security.User{}, errNotAuthorised("Not management user")
}

// remoteAddr is the client's address, for the loopback check (nil when it
// does not parse: not loopback).
func remoteAddr(r *http.Request) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	if err != nil {
		return nil
	}
	return a
}

// seesAll reports whether the user sees every vhost (administrator,
// monitoring) rather than only those it has permissions in.
func (rq *request) seesAll() bool {
	return rq.user.HasTag("administrator") || rq.user.HasTag("monitoring")
}

// writeJSON answers 200 with v.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := appendJSON(nil, v)
	if err != nil {
		writeError(w, errInternal(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "accept, accept-encoding, origin")
	_, _ = w.Write(b)
}

// writeError answers an error with RabbitMQ's body.
func writeError(w http.ResponseWriter, e *apiError) {
	b, _ := json.Marshal(map[string]any{"error": e.kind, "reason": e.reason})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// methodNotAllowed answers 405 with the methods the path allows, as
// RabbitMQ does (its body is empty).
func methodNotAllowed(rq *request, allow string) error {
	rq.w.Header().Set("Allow", allow)
	return &apiError{http.StatusMethodNotAllowed, "method_not_allowed", "Method Not Allowed"}
}

// osHostname is the host part of the default node name.
func osHostname() (string, error) {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h, nil
	}
	return "localhost", nil
}

// goVersion is reported where RabbitMQ reports its Erlang version.
var goVersion = runtime.Version()

// errInternal is a 500 with err's text; a change the cluster did not
// take is clusterRefusal's 503 instead.
func errInternal(err error) *apiError {
	if refused := clusterRefusal(err); refused != nil {
		return refused
	}
	return errInternal(err)
}
