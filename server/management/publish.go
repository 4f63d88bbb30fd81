package management

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
	var missing []string
	for _, k := range []string{"properties", "routing_key", "payload", "payload_encoding"} {
		if _, ok := m[k]; !ok {
			missing = append(missing, "{key_missing,"+k+"}")
		}
	}
	if missing != nil {
		return errBadRequest("[" + strings.Join(missing, ",") + "]")
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
		return &apiError{http.StatusInternalServerError, "internal_server_error", err.Error()}
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
