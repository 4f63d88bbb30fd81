package management

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// publish serves POST /api/exchanges/{vhost}/{name}/publish as RabbitMQ
// 3.10.8 answers it (checked with curl): properties, routing_key, payload
// and payload_encoding ("string" or "base64") are required; the reply is
// {"routed":bool}; a broker refusal is 400 with "CODE NAME - text".
func (h *Handler) publish(rq *request, vhost, exchange string) error {
	if rq.r.Method != http.MethodPost {
		return methodNotAllowed(rq, "POST, OPTIONS")
	}
	m, err := rq.body()
	if err != nil {
		return err
	}
	if err := requireKeys(m, "properties", "routing_key", "payload", "payload_encoding"); err != nil {
		return err
	}
	f := fields{m: m}
	key, payload, enc := f.string("routing_key", ""), f.string("payload", ""), f.string("payload_encoding", "")
	if f.err != nil {
		return f.err
	}
	var body []byte
	switch enc {
	case "string":
		body = []byte(payload)
	case "base64":
		if body, err = base64.StdEncoding.DecodeString(payload); err != nil {
			return errBadRequest([]any{"not_base64", payload})
		}
	default:
		return errBadRequest([]any{"unsupported_encoding", enc})
	}
	pm, ok := m["properties"].(map[string]any)
	if !ok {
		return errBadRequest("properties must be an object")
	}
	props, err := jsonProperties(pm)
	if err != nil {
		return err
	}
	v, err := h.writeVHost(rq, vhost, false)
	if err != nil {
		return err
	}
	if err := h.permit(rq, vhost, security.Write, exchange); err != nil {
		return err
	}
	routed, err := v.PublishMessage(rq.user.Name, exchange, key, props, body)
	if err != nil {
		if code, _, ok := broker.ReplyCode(err); ok {
			return errBadRequest(fmt.Sprintf("%d %s", code, err.Error()))
		}
		return errInternal(err)
	}
	writeJSON(rq.w, item{"routed": routed})
	return nil
}

// jsonProperties reads the management API's message properties, with
// RabbitMQ's ["not_int", name] for a number that is not one.
func jsonProperties(pm map[string]any) (amqp.Properties, error) {
	var p amqp.Properties
	str := func(k string, flag uint16, dst *string) error {
		v, ok := pm[k]
		if !ok || v == nil {
			return nil
		}
		s, ok := v.(string)
		if !ok {
			return errBadRequest([]any{"not_string", k})
		}
		*dst, p.Flags = s, p.Flags|flag
		return nil
	}
	num := func(k string, flag uint16, limit uint64) (uint64, error) {
		v, ok := pm[k]
		if !ok || v == nil {
			return 0, nil
		}
		n, ok := v.(json.Number)
		if !ok {
			return 0, errBadRequest([]any{"not_int", k})
		}
		i, err := n.Int64()
		if err != nil || i < 0 || uint64(i) > limit {
			return 0, errBadRequest([]any{"not_int", k})
		}
		p.Flags |= flag
		return uint64(i), nil
	}
	for _, s := range []struct {
		k    string
		flag uint16
		dst  *string
	}{
		{"content_type", amqp.FlagContentType, &p.ContentType}, {"content_encoding", amqp.FlagContentEncoding, &p.ContentEncoding},
		{"correlation_id", amqp.FlagCorrelationID, &p.CorrelationID}, {"reply_to", amqp.FlagReplyTo, &p.ReplyTo},
		{"expiration", amqp.FlagExpiration, &p.Expiration}, {"message_id", amqp.FlagMessageID, &p.MessageID},
		{"type", amqp.FlagType, &p.Type}, {"user_id", amqp.FlagUserID, &p.UserID}, {"app_id", amqp.FlagAppID, &p.AppID},
	} {
		if err := str(s.k, s.flag, s.dst); err != nil {
			return p, err
		}
	}
	dm, err := num("delivery_mode", amqp.FlagDeliveryMode, 255)
	if err != nil {
		return p, err
	}
	prio, err := num("priority", amqp.FlagPriority, 255)
	if err != nil {
		return p, err
	}
	if p.Timestamp, err = num("timestamp", amqp.FlagTimestamp, 1<<63-1); err != nil {
		return p, err
	}
	p.DeliveryMode, p.Priority = uint8(dm), uint8(prio)
	if hv, ok := pm["headers"]; ok && hv != nil {
		hm, ok := hv.(map[string]any)
		if !ok {
			return p, errBadRequest("headers must be an object")
		}
		p.Headers, p.Flags = jsonTable(hm), p.Flags|amqp.FlagHeaders
	}
	return p, nil
}

// getMessages serves POST /api/queues/{vhost}/{name}/get as RabbitMQ
// 3.10.8 answers it (checked with curl): count, ackmode and encoding
// required; ackmode ack_requeue_true or reject_requeue_true (a peek: every
// message goes back, redelivered), ack_requeue_false, or
// reject_requeue_false (dead-lettered); encoding auto (a payload that is
// valid UTF-8 as a string) or base64; truncate, if given, cuts payloads
// to that many bytes. Read permission on the queue.
func (h *Handler) getMessages(rq *request, vhost, name string) error {
	if rq.r.Method != http.MethodPost {
		return methodNotAllowed(rq, "POST, OPTIONS")
	}
	m, err := rq.body()
	if err != nil {
		return err
	}
	if err := requireKeys(m, "count", "ackmode", "encoding"); err != nil {
		return err
	}
	count, err := intField(m, "count")
	if err != nil {
		return err
	}
	truncate := -1
	if _, ok := m["truncate"]; ok {
		if truncate, err = intField(m, "truncate"); err != nil {
			return err
		}
	}
	f := fields{m: m}
	ackmode, enc := f.string("ackmode", ""), f.string("encoding", "")
	if f.err != nil {
		return f.err
	}
	var mode broker.GetMode
	switch ackmode {
	case "ack_requeue_true", "reject_requeue_true":
		mode = broker.GetRequeue
	case "ack_requeue_false":
		mode = broker.GetAck
	case "reject_requeue_false":
		mode = broker.GetReject
	default:
		return errBadRequest("Unsupported ackmode. Please use ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false.")
	}
	if enc != "auto" && enc != "base64" {
		return errBadRequest("Unsupported encoding. Please use auto or base64.")
	}
	v, err := h.writeVHost(rq, vhost, false)
	if err != nil {
		return err
	}
	if err := h.permit(rq, vhost, security.Read, name); err != nil {
		return err
	}
	got, err := v.GetMessages(name, min(count, maxGet), mode)
	if err != nil {
		if code, _, ok := broker.ReplyCode(err); ok && code == amqp.NotFound {
			return &apiError{http.StatusNotFound, "not_found", err.Error()}
		}
		return applyError(err)
	}
	items := []item{}
	for _, g := range got {
		body := g.Body
		if truncate >= 0 && len(body) > truncate {
			body = body[:truncate]
		}
		it := item{"payload_bytes": len(g.Body), "redelivered": g.Redelivered, "exchange": g.Exchange,
			"routing_key": g.RoutingKey, "message_count": g.Remaining, "properties": propertiesJSON(&g.Properties)}
		if enc == "auto" && utf8.Valid(body) {
			it["payload"], it["payload_encoding"] = string(body), "string"
		} else {
			it["payload"], it["payload_encoding"] = base64.StdEncoding.EncodeToString(body), "base64"
		}
		items = append(items, it)
	}
	writeJSON(rq.w, items)
	return nil
}

// maxGet caps one get's count: each message is held until all are taken.
const maxGet = 10000

// intField reads a non-negative integer property, a number or a string
// of one (rabbitmqadmin sends "1"), RabbitMQ's ["not_integer", v]
// otherwise.
func intField(m map[string]any, k string) (int, error) {
	var text string
	switch v := m[k].(type) {
	case json.Number:
		text = v.String()
	case string:
		text = v
	}
	if i, err := strconv.ParseInt(text, 10, 32); err == nil && i >= 0 {
		return int(i), nil
	}
	return 0, errBadRequest([]any{"not_integer", fmt.Sprint(m[k])})
}

// propertiesJSON shows the properties that are set, with RabbitMQ's
// names; none is [], as RabbitMQ writes an empty property list.
func propertiesJSON(p *amqp.Properties) any {
	it := item{}
	for _, s := range []struct {
		k    string
		flag uint16
		v    string
	}{
		{"content_type", amqp.FlagContentType, p.ContentType}, {"content_encoding", amqp.FlagContentEncoding, p.ContentEncoding},
		{"correlation_id", amqp.FlagCorrelationID, p.CorrelationID}, {"reply_to", amqp.FlagReplyTo, p.ReplyTo},
		{"expiration", amqp.FlagExpiration, p.Expiration}, {"message_id", amqp.FlagMessageID, p.MessageID},
		{"type", amqp.FlagType, p.Type}, {"user_id", amqp.FlagUserID, p.UserID}, {"app_id", amqp.FlagAppID, p.AppID},
		{"cluster_id", amqp.FlagClusterID, p.ClusterID},
	} {
		if p.Flags&s.flag != 0 {
			it[s.k] = s.v
		}
	}
	if p.Flags&amqp.FlagDeliveryMode != 0 {
		it["delivery_mode"] = int(p.DeliveryMode)
	}
	if p.Flags&amqp.FlagPriority != 0 {
		it["priority"] = int(p.Priority)
	}
	if p.Flags&amqp.FlagTimestamp != 0 {
		it["timestamp"] = p.Timestamp
	}
	if p.Flags&amqp.FlagHeaders != 0 {
		it["headers"] = tableJSON(p.Headers)
	}
	if len(it) == 0 {
		return []any{}
	}
	return it
}

// requireKeys refuses a body without one of keys, with RabbitMQ's
// "[{key_missing,k},…]" naming each one missing.
func requireKeys(m map[string]any, keys ...string) error {
	var missing []string
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			missing = append(missing, "{key_missing,"+k+"}")
		}
	}
	if missing != nil {
		return errBadRequest("[" + strings.Join(missing, ",") + "]")
	}
	return nil
}
