package telemetry

import (
	"bufio"
	"net/http"
	"strconv"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// perObject serves /metrics/per-object: the registry's metrics, then one
// series per queue in each queue family, written straight as Prometheus
// text from one walk over the queues. No collector is registered per
// queue, and no metric object is built per series, so a scrape of 100k
// queues costs the walk and the text (see BenchmarkPerObject).
type perObject struct {
	reg *prometheus.Registry
	srv *broker.Server
}

func (p perObject) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The registry's part in the text format, uncompressed, so the queue
	// families can follow in the same stream.
	r = r.Clone(r.Context())
	r.Header.Set("Accept", "text/plain; version=0.0.4")
	r.Header.Del("Accept-Encoding")
	promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	bw := bufio.NewWriterSize(w, 64<<10)
	writeQueueFamilies(bw, p.srv.AppendQueueStats(nil))
	_ = bw.Flush()
}

// queueFamily is one per-queue metric: its name, help and type as
// RabbitMQ's prometheus plugin has them where it has them (3.10.8's
// /metrics/per-object), and how to read it from a queue's stats; skip
// leaves a queue out (no head timestamp).
type queueFamily struct {
	name, help, typ string
	// published uses RabbitMQ's labels for it: queue_vhost, queue.
	published bool
	value     func(q *broker.QueueStats) float64
	skip      func(q *broker.QueueStats) bool
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// queueFamilies are the per-queue metrics. RabbitMQ labels its per-queue
// delivery and publish counters by channel too (and by exchange for
// publishes), and drops them with the channel; ours are the queue's own,
// labelled by vhost and queue only, so sums by queue agree with
// RabbitMQ's and a channel's end resets nothing. Published counts every
// message that entered the queue, dead-letters included.
var queueFamilies = []queueFamily{
	{name: "rabbitmq_queue_messages_ready", help: "Messages ready to be delivered to consumers", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.Ready) }},
	{name: "rabbitmq_queue_messages_unacked", help: "Messages delivered to consumers but not yet acknowledged", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.Unacked) }},
	{name: "rabbitmq_queue_messages", help: "Sum of ready and unacknowledged messages - total queue depth", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.Ready + q.Unacked) }},
	{name: "rabbitmq_queue_consumers", help: "Consumers on a queue", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.Consumers) }},
	{name: "rabbitmq_queue_messages_bytes", help: "Size in bytes of ready and unacknowledged messages", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.ReadyBytes + q.UnackedBytes) }},
	{name: "rabbitmq_queue_messages_ready_bytes", help: "Size in bytes of ready messages", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.ReadyBytes) }},
	{name: "rabbitmq_queue_messages_unacked_bytes", help: "Size in bytes of all unacknowledged messages", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.UnackedBytes) }},
	{name: "rabbitmq_queue_head_message_timestamp", help: "Timestamp of the first message in the queue, if any", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return float64(q.HeadTimestamp) },
		skip:  func(q *broker.QueueStats) bool { return !q.HasHeadTimestamp }},
	{name: "rabbitmq_queue_messages_published_total", help: "Total number of messages published to queues", typ: "counter", published: true,
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.Published) }},
	{name: "rabbitmq_channel_get_ack_total", help: "Total number of messages fetched with basic.get in manual acknowledgement mode", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.Got - q.Counters.GotNoAck) }},
	{name: "rabbitmq_channel_get_total", help: "Total number of messages fetched with basic.get in automatic acknowledgement mode", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.GotNoAck) }},
	{name: "rabbitmq_channel_messages_delivered_ack_total", help: "Total number of messages delivered to consumers in manual acknowledgement mode", typ: "counter",
		value: func(q *broker.QueueStats) float64 {
			c := q.Counters
			return float64(c.Delivered - c.Got - c.DeliveredNoAck)
		}},
	{name: "rabbitmq_channel_messages_delivered_total", help: "Total number of messages delivered to consumers in automatic acknowledgement mode", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.DeliveredNoAck) }},
	{name: "rabbitmq_channel_messages_redelivered_total", help: "Total number of messages redelivered to consumers", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.Redelivered) }},
	{name: "rabbitmq_channel_messages_acked_total", help: "Total number of messages acknowledged by consumers", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.Acked) }},
	{name: "rabbitmq_channel_get_empty_total", help: "Total number of times basic.get operations fetched no message", typ: "counter",
		value: func(q *broker.QueueStats) float64 { return float64(q.Counters.GetEmpty) }},
	// Ours: RabbitMQ has no such series.
	{name: "amqp_queue_head_message_age_seconds", help: "How long the head message has been in the queue (0: empty)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return seconds(q.HeadAge) }},
	{name: "amqp_queue_oldest_unacked_age_seconds", help: "How long the longest-unacknowledged delivery has been out (0: none)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return seconds(q.OldestUnackedAge) }},
	{name: "amqp_queue_publish_rate", help: "Messages entering the queue per second over the last sampling interval (management API: publish_details.rate)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return q.Rates.Publish }},
	{name: "amqp_queue_deliver_get_rate", help: "Deliveries and basic.get per second over the last sampling interval (deliver_get_details.rate)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return q.Rates.DeliverGet }},
	{name: "amqp_queue_redeliver_rate", help: "Redeliveries per second over the last sampling interval (redeliver_details.rate)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return q.Rates.Redeliver }},
	{name: "amqp_queue_ack_rate", help: "Acknowledgements per second over the last sampling interval (ack_details.rate)", typ: "gauge",
		value: func(q *broker.QueueStats) float64 { return q.Rates.Ack }},
}

// writeQueueFamilies writes rabbitmq_queues and every queue family for qs
// in the Prometheus text format (0.0.4). Each queue's two label sets are
// escaped once, into one buffer.
func writeQueueFamilies(w *bufio.Writer, qs []broker.QueueStats) {
	size := 0
	for i := range qs {
		size += 2 * (len(qs[i].VHost) + len(qs[i].Name) + len(`{queue_vhost="",queue=""}`))
	}
	labels := make([]byte, 0, size) // grows only for escapes
	at := make([]int, 0, 2*len(qs)+1)
	for i := range qs {
		at = append(at, len(labels))
		labels = appendLabels(labels, "vhost", &qs[i])
		at = append(at, len(labels))
		labels = appendLabels(labels, "queue_vhost", &qs[i])
	}
	at = append(at, len(labels))
	line := make([]byte, 0, 256)
	line = append(line, "# HELP rabbitmq_queues Queues available.\n# TYPE rabbitmq_queues gauge\nrabbitmq_queues "...)
	line = strconv.AppendInt(line, int64(len(qs)), 10)
	_, _ = w.Write(append(line, '\n'))
	for _, f := range queueFamilies {
		_, _ = w.WriteString("# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.typ + "\n")
		for i := range qs {
			q := &qs[i]
			if f.skip != nil && f.skip(q) {
				continue
			}
			set := 2 * i
			if f.published {
				set++
			}
			line = append(line[:0], f.name...)
			line = append(line, labels[at[set]:at[set+1]]...)
			line = append(line, ' ')
			line = appendValue(line, f.value(q))
			_, _ = w.Write(append(line, '\n'))
		}
	}
}

// appendValue appends v as the text format has it: integers (counts,
// counters, most samples) without the float formatting's cost.
func appendValue(dst []byte, v float64) []byte {
	if i := int64(v); float64(i) == v && i > -1<<53 && i < 1<<53 {
		return strconv.AppendInt(dst, i, 10)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// appendLabels appends {vhostLabel="…",queue="…"} for q, escaped as the
// text format wants (backslash, double quote, line feed).
func appendLabels(dst []byte, vhostLabel string, q *broker.QueueStats) []byte {
	dst = append(dst, '{')
	dst = append(dst, vhostLabel...)
	dst = append(dst, `="`...)
	dst = appendEscaped(dst, q.VHost)
	dst = append(dst, `",queue="`...)
	dst = appendEscaped(dst, q.Name)
	return append(dst, `"}`...)
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, `\\`...)
		case '"':
			dst = append(dst, `\"`...)
		case '\n':
			dst = append(dst, `\n`...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
