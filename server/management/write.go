package management

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Changes go through (*broker.VHost).Apply, as a channel's do; its AMQP
// refusals are mapped as RabbitMQ's plugin maps them: 404 NOT_FOUND to
// 404 not_found, 403 ACCESS_REFUSED to 401 not_authorised, the store's
// failures to 500, and every other refusal (406 inequivalence, 405
// locked, invalid arguments or exchange types) to 400 bad_request with
// the reply text less its code name.

// bodyError is the answer to a request body that could not be read: 413
// past the cap ServeHTTP put on it, else 400 with reason.
func bodyError(err error, reason string) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{http.StatusRequestEntityTooLarge, "bad_request", "request body too large"}
	}
	return errBadRequest(reason)
}

// body decodes a request's JSON object (an empty body is {}), with
// RabbitMQ's "not_json" for anything else; the body was capped by
// ServeHTTP.
func (rq *request) body() (map[string]any, error) {
	b, err := io.ReadAll(rq.r.Body)
	if err != nil {
		return nil, bodyError(err, "not_json")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil || d.More() {
		return nil, errBadRequest("not_json")
	}
	return m, nil
}

// fields reads a body's properties, keeping the first error.
type fields struct {
	m   map[string]any
	err error
}

// bool reads a boolean property (true, false, or those as strings, as
// RabbitMQ accepts), def when absent; RabbitMQ's ["not_boolean", v]
// otherwise.
func (f *fields) bool(k string, def bool) bool {
	v, ok := f.m[k]
	if !ok || v == nil || f.err != nil {
		return def
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch x {
		case "true":
			return true
		case "false":
			return false
		}
	}
	f.err = errBadRequest([]any{"not_boolean", fmt.Sprint(v)})
	return def
}

// string reads a string property, def when absent.
func (f *fields) string(k, def string) string {
	v, ok := f.m[k]
	if !ok || v == nil || f.err != nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		f.err = errBadRequest(fmt.Sprintf("%s must be a string", k))
	}
	return s
}

// args reads "arguments" as an AMQP table (see argsField).
func (f *fields) args() amqp.Table {
	t, err := argsField(f.m)
	if f.err == nil {
		f.err = err
	}
	return t
}

// argsField reads "arguments" as an AMQP table: JSON integers become
// longs, as in RabbitMQ, other numbers doubles, objects tables.
func argsField(m map[string]any) (amqp.Table, error) {
	v, ok := m["arguments"]
	if !ok || v == nil {
		return amqp.Table{}, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errBadRequest("arguments must be an object")
	}
	return jsonTable(obj), nil
}

func jsonTable(obj map[string]any) amqp.Table {
	t := make(amqp.Table, len(obj))
	for k, v := range obj {
		t[k] = jsonField(v)
	}
	return t
}

func jsonField(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		return jsonTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonField(e)
		}
		return out
	}
	return v // string, bool, nil
}

// writeVHost is the vhost a change is made in, after RabbitMQ's checks:
// 404 vhost_not_found (404 Object Not Found for a delete) and 401 when
// the user has no access to it.
func (h *Handler) writeVHost(rq *request, name string, del bool) (*broker.VHost, error) {
	v := h.srv.VHost(name)
	if v == nil {
		if del {
			return nil, errNotFound()
		}
		return nil, &apiError{http.StatusNotFound, "not_found", "vhost_not_found"}
	}
	if !h.srv.Security().CanAccessVHost(rq.user.Name, name) {
		return nil, errNotAuthorised("User not authorised to access virtual host")
	}
	return v, nil
}

// permit checks one of the user's permissions on a resource.
func (h *Handler) permit(rq *request, vhost string, a security.Access, name string) error {
	if !h.srv.Security().Permitted(rq.user.Name, vhost, a, name) {
		return errNotAuthorised("Access refused.")
	}
	return nil
}

// applyError maps an Apply refusal to RabbitMQ's HTTP reply.
func applyError(err error) error {
	code, text, ok := broker.ReplyCode(err)
	if !ok {
		return err
	}
	switch code {
	case amqp.NotFound:
		return &apiError{http.StatusNotFound, "not_found", text}
	case amqp.AccessRefused:
		return errNotAuthorised("Access refused.")
	case amqp.InternalError, amqp.ResourceError:
		return &apiError{http.StatusInternalServerError, "internal_server_error", text}
	}
	return errBadRequest(text)
}

// created answers 201 for a new object, 204 for one that existed.
func created(w http.ResponseWriter, isNew bool) {
	if isNew {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putQueue declares a queue: PUT /api/queues/{vhost}/{name}.
func (h *Handler) putQueue(rq *request, vhost, name string) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	f := fields{m: m}
	durable, autoDelete := f.bool("durable", false), f.bool("auto_delete", false)
	args, qtype := f.args(), f.string("type", "")
	if f.err != nil {
		return f.err
	}
	if _, set := args["x-queue-type"]; qtype != "" && !set {
		args["x-queue-type"] = qtype
	}
	v, err := h.writeVHost(rq, vhost, false)
	if err != nil {
		return err
	}
	if err := h.permit(rq, vhost, security.Configure, name); err != nil {
		return err
	}
	prev := v.Queue(name)
	r, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: name, Durable: durable,
		AutoDelete: autoDelete, Arguments: args}, broker.WithDefaultQueueType())
	if err != nil {
		return applyError(err)
	}
	created(rq.w, r.Queue != prev)
	return nil
}

// deleteQueue deletes a queue, with ?if-empty=true and ?if-unused=true.
func (h *Handler) deleteQueue(rq *request, vhost, name string) error {
	v, err := h.writeVHost(rq, vhost, true)
	if err != nil {
		return err
	}
	if v.Queue(name) == nil {
		return errNotFound()
	}
	if err := h.permit(rq, vhost, security.Configure, name); err != nil {
		return err
	}
	q := rq.r.URL.Query()
	if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDelete, Queue: name,
		IfEmpty: q.Get("if-empty") == "true", IfUnused: q.Get("if-unused") == "true"}); err != nil {
		return applyError(err)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// purgeQueue drops a queue's ready messages: DELETE …/contents.
func (h *Handler) purgeQueue(rq *request, vhost, name string) error {
	v, err := h.writeVHost(rq, vhost, true)
	if err != nil {
		return err
	}
	if v.Queue(name) == nil {
		return errNotFound()
	}
	if err := h.permit(rq, vhost, security.Read, name); err != nil {
		return err
	}
	if _, ok := v.Purge(name); !ok {
		return errNotFound()
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// putExchange declares an exchange: PUT /api/exchanges/{vhost}/{name}.
func (h *Handler) putExchange(rq *request, vhost, name string) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	f := fields{m: m}
	kind, durable := f.string("type", "direct"), f.bool("durable", false)
	autoDelete, internal, args := f.bool("auto_delete", false), f.bool("internal", false), f.args()
	if f.err != nil {
		return f.err
	}
	v, err := h.writeVHost(rq, vhost, false)
	if err != nil {
		return err
	}
	if err := h.permit(rq, vhost, security.Configure, name); err != nil {
		return err
	}
	existed := v.Exchange(name) != nil
	if _, err := v.Apply(broker.DefChange{Kind: broker.ExchangeDeclare, Exchange: name, Type: kind,
		Durable: durable, AutoDelete: autoDelete, Internal: internal, Arguments: args}); err != nil {
		return applyError(err)
	}
	created(rq.w, !existed)
	return nil
}

// deleteExchange deletes an exchange, with ?if-unused=true.
func (h *Handler) deleteExchange(rq *request, vhost, name string) error {
	v, err := h.writeVHost(rq, vhost, true)
	if err != nil {
		return err
	}
	if v.Exchange(name) == nil {
		return errNotFound()
	}
	if err := h.permit(rq, vhost, security.Configure, name); err != nil {
		return err
	}
	if _, err := v.Apply(broker.DefChange{Kind: broker.ExchangeDelete, Exchange: name,
		IfUnused: rq.r.URL.Query().Get("if-unused") == "true"}); err != nil {
		return applyError(err)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}

// bindPermit checks a binding's permissions as RabbitMQ does: write on
// the destination, read on the source.
func (h *Handler) bindPermit(rq *request, vhost, src, dest string) error {
	if err := h.permit(rq, vhost, security.Write, dest); err != nil {
		return err
	}
	return h.permit(rq, vhost, security.Read, src)
}

// postBinding binds: POST /api/bindings/{vhost}/e/{src}/{q|e}/{dest},
// answering 201 with the new binding's Location.
func (h *Handler) postBinding(rq *request, vhost, src, dest string, toX bool) error {
	m, err := rq.body()
	if err != nil {
		return err
	}
	f := fields{m: m}
	key, args := f.string("routing_key", ""), f.args()
	if f.err != nil {
		return f.err
	}
	v, err := h.writeVHost(rq, vhost, false)
	if err != nil {
		return err
	}
	if err := h.bindPermit(rq, vhost, src, dest); err != nil {
		return err
	}
	if _, err := v.Apply(broker.DefChange{Kind: broker.Bind, Exchange: src, Destination: dest,
		ToExchange: toX, RoutingKey: key, Arguments: args}); err != nil {
		return applyError(err)
	}
	rq.w.Header().Set("Location", url.PathEscape(dest)+"/"+propertiesKey(key, args))
	rq.w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteBinding unbinds the binding with properties key props.
func (h *Handler) deleteBinding(rq *request, vhost, src, dest string, toX bool, props string) error {
	v, err := h.writeVHost(rq, vhost, true)
	if err != nil {
		return err
	}
	b, ok := findBinding(v, src, dest, toX, props)
	if !ok || src == "" {
		return errNotFound()
	}
	if err := h.bindPermit(rq, vhost, src, dest); err != nil {
		return err
	}
	if _, err := v.Apply(broker.DefChange{Kind: broker.Unbind, Exchange: src, Destination: dest,
		ToExchange: toX, RoutingKey: b.RoutingKey, Arguments: b.Arguments}); err != nil {
		return applyError(err)
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}
