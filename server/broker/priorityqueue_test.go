package broker_test

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A priority queue delivers higher priorities first, in order within one
// priority; priorities above x-max-priority count as the maximum.
func TestPriorityQueue(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := uname(t, "pq")
	cleanupQueues(t, url, q)
	if _, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-priority": int32(5)}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []uint8{1, 5, 3, 9, 0, 5, 2} {
		publish(t, ch, "", q, amqp.Publishing{Priority: p, Body: []byte(fmt.Sprintf("%d:%d", i, p))})
	}
	waitCount(t, conn, q, 7)
	var got []string
	for range 7 {
		d, ok, err := ch.Get(q, true)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		got = append(got, string(d.Body))
	}
	// 9 counts as 5 and came after the first 5.
	want := []string{"1:5", "3:9", "5:5", "2:3", "6:2", "0:1", "4:0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestPriorityQueueValidation(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	q := uname(t, "q")
	cleanupQueues(t, url, q)
	_, err := openChan(t, conn).QueueDeclare(q, false, false, false, false, amqp.Table{"x-max-priority": int32(256)})
	wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '"+q+"' in vhost '/': {max_value_exceeded,256}")
}
