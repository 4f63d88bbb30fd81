package management_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	"github.com/amqp-go/amqp-go/shared/wal"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestXStorage checks GET /api/x-storage, ours: the log's counters and
// which queues hold messages in its oldest segment, on a data directory;
// an empty log view on the memory store; monitoring may read it and a
// management user may not.
func TestXStorage(t *testing.T) {
	dir := t.TempDir()
	a := startAPIWith(t, broker.Config{DataDir: dir, SegmentSize: 8 << 10})
	c, err := amqp.Dial(a.amqp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 64))
	for _, q := range []string{"pinned", "rolling"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(q string, n, size int) {
		for range n {
			if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(strings.Repeat("m", size))}); err != nil {
				t.Fatal(err)
			}
			select {
			case cf := <-confirms:
				if !cf.Ack {
					t.Fatal("nacked")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no confirm")
			}
		}
	}
	publish("pinned", 2, 10)
	publish("rolling", 10, 2000)

	st := a.guest("GET", "/x-storage", "")
	want(t, "x-storage", st, 200)
	m := st.obj(t)
	if m["segmented"] != true || m["segments"].(float64) < 2 || m["appended_records"].(float64) != 12 || m["fsyncs"].(float64) < 1 {
		t.Fatalf("x-storage: %s", st.body)
	}
	if b := m["fsync_buckets"].([]any); len(b) != 5 {
		t.Errorf("fsync_buckets %v", b)
	}
	segs := m["segment_files"].([]any)
	first := segs[0].(map[string]any)
	holders := map[string]float64{}
	for _, h := range first["holders"].([]any) {
		h := h.(map[string]any)
		if h["kind"] != "queue" || h["vhost"] != "/" {
			t.Errorf("holder %v", h)
		}
		holders[h["name"].(string)] = h["live"].(float64)
	}
	if holders["pinned"] != 2 || first["active"] != false {
		t.Errorf("oldest segment %v", first)
	}
	if last := segs[len(segs)-1].(map[string]any); last["active"] != true {
		t.Errorf("newest segment %v", last)
	}

	// After acks, what the page says holds each segment is what the files
	// say (read as walinspect reads them, next to the running server),
	// once the acks' records are written.
	for range 4 {
		d, ok, err := ch.Get("rolling", false)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	holdersOf := func() map[uint64]map[uint64]int {
		out := map[uint64]map[uint64]int{}
		for _, s := range a.guest("GET", "/x-storage", "").obj(t)["segment_files"].([]any) {
			s := s.(map[string]any)
			for _, h := range s["holders"].([]any) {
				h := h.(map[string]any)
				seg := uint64(s["number"].(float64))
				if out[seg] == nil {
					out[seg] = map[uint64]int{}
				}
				out[seg][uint64(h["store_id"].(float64))] = int(h["live"].(float64))
			}
		}
		return out
	}
	inFiles := func() map[uint64]map[uint64]int {
		r, err := wal.OpenReader(filepath.Join(dir, "messages"))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Recover()
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]map[uint64]int{}
		for id, q := range rec.Queues {
			for _, e := range q.Entries {
				if out[e.Pos.Segment] == nil {
					out[e.Pos.Segment] = map[uint64]int{}
				}
				out[e.Pos.Segment][id]++
			}
		}
		return out
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		page, files := holdersOf(), inFiles()
		total := 0
		for _, m := range page {
			for _, n := range m {
				total += n
			}
		}
		if reflect.DeepEqual(page, files) && total == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("x-storage holders %v, the files' live messages %v (want 8 in all)", page, files)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval, under the deadline
	}

	want(t, "PUT user", a.guest("PUT", "/users/mon", `{"password":"p","tags":"monitoring"}`), 201)
	want(t, "PUT user", a.guest("PUT", "/users/mgmt", `{"password":"p","tags":"management"}`), 201)
	want(t, "monitoring", a.do("mon", "p", "GET", "/x-storage", ""), 200)
	want(t, "management", a.do("mgmt", "p", "GET", "/x-storage", ""), 401, "not_authorised", "Not monitor user")
	want(t, "POST", a.guest("POST", "/x-storage", "{}"), 405)

	if os.Getenv(servertest.StoreEnv) == "badger" {
		return // startAPI's server has a data directory too
	}
	mem := startAPI(t)
	r := mem.guest("GET", "/x-storage", "")
	want(t, "memory x-storage", r, 200)
	if mm := r.obj(t); mm["segmented"] != false || len(mm["segment_files"].([]any)) != 0 {
		t.Errorf("memory store: %s", r.body)
	}
}
