package bench

import (
	"os"
	"testing"

	"github.com/amqp-go/amqp-go/server/servertest"
)

// brokerURL returns the AMQP URL of the broker the end-to-end tests use:
// PERFTEST_TEST_URL when set (e.g. a RabbitMQ started with
// scripts/rabbitmq-peer), else an in-process broker from
// server/servertest, closed when the test ends.
func brokerURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("PERFTEST_TEST_URL"); u != "" {
		return u
	}
	return servertest.Start(t)
}
