package broker

import (
	"strings"
	"sync"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): an RPC client
// consumes the pseudo-queue in no-ack mode and publishes requests with
// reply_to "amq.rabbitmq.reply-to"; the broker rewrites that to a name
// for the client's channel, and replies published to that name on the
// default exchange go straight to the client, never through a queue.
const (
	replyQueue  = "amq.rabbitmq.reply-to"
	replyPrefix = replyQueue + "."
)

// replyRegistry maps reply names to the channels consuming them.
type replyRegistry struct {
	mu    sync.Mutex
	chans map[string]*channel
}

func (r *replyRegistry) add(key string, ch *channel) {
	r.mu.Lock()
	if r.chans == nil {
		r.chans = map[string]*channel{}
	}
	r.chans[key] = ch
	r.mu.Unlock()
}

func (r *replyRegistry) remove(key string) {
	r.mu.Lock()
	delete(r.chans, key)
	r.mu.Unlock()
}

func (r *replyRegistry) get(key string) *channel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chans[key]
}

// consumeReply starts the channel's direct reply-to consumer.
func (ch *channel) consumeReply(m *amqp.BasicConsume) error {
	if !m.NoAck {
		return protoErr(amqp.PreconditionFailed, m, "reply consumer cannot acknowledge")
	}
	if ch.replyKey != "" {
		return protoErr(amqp.PreconditionFailed, m, "reply consumer already set")
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = "amq.ctag-" + randomName()
	}
	ch.replyKey, ch.replyTag = randomName(), tag
	ch.conn.srv.replies.add(ch.replyKey, ch)
	if !m.NoWait {
		ch.conn.send(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag})
	}
	return nil
}

// cancelReply ends the direct reply-to consumer if tag names it.
func (ch *channel) cancelReply(tag string) bool {
	if ch.replyKey == "" || tag != ch.replyTag {
		return false
	}
	ch.conn.srv.replies.remove(ch.replyKey)
	ch.replyKey, ch.replyTag = "", ""
	return true
}

// rewriteReplyTo gives a request's reply_to (amq.rabbitmq.reply-to) this
// channel's reply name.
func (ch *channel) rewriteReplyTo(msg *Message, props *amqp.Properties, m amqp.Method) error {
	if ch.replyKey == "" {
		return protoErr(amqp.PreconditionFailed, m, "fast reply consumer does not exist")
	}
	props.ReplyTo = replyPrefix + ch.replyKey
	msg.Properties = props.Append(nil)
	return nil
}

// deliverReply hands a reply straight to the requesting channel; it
// reports false if that channel (or its reply consumer) is gone.
func (s *Server) deliverReply(msg *Message) bool {
	key, ok := strings.CutPrefix(msg.RoutingKey, replyPrefix)
	if !ok {
		return false
	}
	ch := s.replies.get(key)
	if ch == nil {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return false
	}
	cn := ch.conn
	cn.outMu.Lock()
	ch.nextTag++
	cn.appendMethodLocked(ch.id, cn.deliverMethod(amqp.BasicDeliver{ConsumerTag: ch.replyTag, DeliveryTag: ch.nextTag,
		Exchange: msg.Exchange, RoutingKey: msg.RoutingKey}))
	cn.appendContentLocked(ch.id, msg)
	cn.outMu.Unlock()
	cn.kick()
	return true
}
