// Package telemetry serves the broker's HTTP operations endpoint:
// Prometheus metrics named as RabbitMQ's prometheus plugin names them,
// a health check and, when asked for, Go's pprof handlers; over HTTPS with
// Options.TLS.
//
//	/metrics             aggregated metrics: cheap with any number of queues
//	/metrics/per-object  the same plus one series per queue
//	/health              200 {"status":"ok"} while the broker serves
//	/debug/pprof/        net/http/pprof, with Options.Pprof
package telemetry

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// storageCollector reports the durable store's counters at scrape time
// (they read zero on the memory backend, so dashboards keep their shape).
type storageCollector struct{ srv *broker.Server }

var (
	walFsyncDesc = prometheus.NewDesc("amqp_wal_fsync_duration_seconds",
		"Latency of message-log fsyncs (one per group-commit batch).", nil, nil)
	walBytesDesc = prometheus.NewDesc("amqp_wal_written_bytes_total",
		"Bytes appended to the message log.", nil, nil)
	walBatchesDesc = prometheus.NewDesc("amqp_wal_batches_total",
		"Group-commit batches written to the message log.", nil, nil)
	walSegmentsDesc = prometheus.NewDesc("amqp_wal_segments",
		"Segment files of the message log.", nil, nil)
	walDiskDesc = prometheus.NewDesc("amqp_wal_disk_bytes",
		"Bytes of the message log on disk.", nil, nil)
	ringHitsDesc = prometheus.NewDesc("amqp_engine_ringbuffer_hits_total",
		"Deliveries served from a queue's in-memory ring buffer.", nil, nil)
	ringMissesDesc = prometheus.NewDesc("amqp_engine_ringbuffer_misses_total",
		"Deliveries read back from the message log.", nil, nil)
)

func (c storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{walFsyncDesc, walBytesDesc, walBatchesDesc, walSegmentsDesc, walDiskDesc, ringHitsDesc, ringMissesDesc} {
		ch <- d
	}
}

func (c storageCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.StorageStats()
	// The log's fixed buckets: 1, 4, 16 and 64 ms, then +Inf.
	bounds := []float64{0.001, 0.004, 0.016, 0.064}
	buckets := map[float64]uint64{}
	var cum uint64
	for i, le := range bounds {
		cum += st.FsyncBuckets[i]
		buckets[le] = cum
	}
	ch <- prometheus.MustNewConstHistogram(walFsyncDesc, st.Fsyncs, st.FsyncTotal.Seconds(), buckets)
	ch <- prometheus.MustNewConstMetric(walBytesDesc, prometheus.CounterValue, float64(st.AppendedBytes))
	ch <- prometheus.MustNewConstMetric(walBatchesDesc, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(walSegmentsDesc, prometheus.GaugeValue, float64(st.Segments))
	ch <- prometheus.MustNewConstMetric(walDiskDesc, prometheus.GaugeValue, float64(st.DiskBytes))
	ch <- prometheus.MustNewConstMetric(ringHitsDesc, prometheus.CounterValue, float64(st.RingHits))
	ch <- prometheus.MustNewConstMetric(ringMissesDesc, prometheus.CounterValue, float64(st.RingMisses))
}

// Options is what the endpoint reports on.
type Options struct {
	Server *broker.Server
	// Resources, if set, reports the memory and disk monitor's state.
	Resources func() monitor.State
	// Pprof serves Go's pprof handlers under /debug/pprof/ too.
	Pprof bool
	// TLS, if set, serves HTTPS.
	TLS *tls.Config
}

// Handler returns the endpoint's routes.
func Handler(o Options) http.Handler {
	agg := prometheus.NewRegistry()
	per := prometheus.NewRegistry()
	for _, r := range []*prometheus.Registry{agg, per} {
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		r.MustRegister(storageCollector{srv: o.Server})
	}
	agg.MustRegister(&collector{o: o})
	per.MustRegister(&collector{o: o, perObject: true})

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(agg, promhttp.HandlerOpts{}))
	mux.Handle("/metrics/per-object", perObject{reg: per, srv: o.Server})
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		st := o.Server.Stats()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "alarm": st.Alarm, "connections": st.Connections})
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Serve listens on addr and serves Handler(o) until the returned server is
// closed.
func Serve(addr string, o Options) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	hs := &http.Server{Handler: Handler(o), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return hs, ln.Addr(), nil
}

var (
	protoLabel = prometheus.Labels{"protocol": "amqp091"}

	descConnections = prometheus.NewDesc("rabbitmq_connections", "Connections currently open.", nil, nil)
	descChannels    = prometheus.NewDesc("rabbitmq_channels", "Channels currently open.", nil, nil)
	descQueues      = prometheus.NewDesc("rabbitmq_queues", "Queues available.", nil, nil)
	descReady       = prometheus.NewDesc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers.", nil, nil)
	descUnacked     = prometheus.NewDesc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged.", nil, nil)
	descMessages    = prometheus.NewDesc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages.", nil, nil)
	descReceived    = prometheus.NewDesc("rabbitmq_global_messages_received_total", "Total number of messages received from publishers.", nil, protoLabel)
	descConfirmed   = prometheus.NewDesc("rabbitmq_global_messages_confirmed_total", "Total number of messages confirmed to publishers.", nil, protoLabel)
	descDelivered   = prometheus.NewDesc("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers (including basic.get).", nil, protoLabel)
	descAcked       = prometheus.NewDesc("rabbitmq_global_messages_acknowledged_total", "Total number of messages acknowledged by consumers.", nil, protoLabel)
	descRSS         = prometheus.NewDesc("rabbitmq_process_resident_memory_bytes", "Memory used in bytes.", nil, nil)
	descMemLimit    = prometheus.NewDesc("rabbitmq_resident_memory_limit_bytes", "Memory high watermark in bytes.", nil, nil)
	descDiskFree    = prometheus.NewDesc("rabbitmq_disk_space_available_bytes", "Disk space available in bytes.", nil, nil)
	descDiskLimit   = prometheus.NewDesc("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark in bytes.", nil, nil)
	descMemAlarm    = prometheus.NewDesc("rabbitmq_alarms_memory_used_watermark", "1 while the memory alarm is raised.", nil, nil)
	descDiskAlarm   = prometheus.NewDesc("rabbitmq_alarms_free_disk_space_watermark", "1 while the disk alarm is raised.", nil, nil)
)

// collector reads the broker's counters at scrape time.
type collector struct {
	o         Options
	perObject bool
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descChannels, descReceived, descConfirmed,
		descDelivered, descAcked, descRSS, descMemLimit, descDiskFree, descDiskLimit, descMemAlarm, descDiskAlarm} {
		ch <- d
	}
	if !c.perObject { // per-object, perObject writes the queue families
		ch <- descQueues
		ch <- descReady
		ch <- descUnacked
		ch <- descMessages
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.o.Server.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descConnections, float64(st.Connections))
	gauge(descChannels, float64(st.Channels))
	counter(descReceived, st.MessagesReceived)
	counter(descConfirmed, st.MessagesConfirmed)
	counter(descDelivered, st.MessagesDelivered)
	counter(descAcked, st.MessagesAcknowledged)
	if !c.perObject {
		qs := c.o.Server.AppendQueueStats(nil)
		gauge(descQueues, float64(len(qs)))
		var ready, unacked int
		for _, q := range qs {
			ready += q.Ready
			unacked += q.Unacked
		}
		gauge(descReady, float64(ready))
		gauge(descUnacked, float64(unacked))
		gauge(descMessages, float64(ready+unacked))
	}
	if c.o.Resources != nil {
		r := c.o.Resources()
		gauge(descRSS, float64(r.RSS))
		gauge(descMemLimit, float64(r.MemoryLimit))
		gauge(descDiskFree, float64(r.DiskFree))
		gauge(descDiskLimit, float64(r.DiskLimit))
		gauge(descMemAlarm, b2f(r.MemoryAlarm))
		gauge(descDiskAlarm, b2f(r.DiskAlarm))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
