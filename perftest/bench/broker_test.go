package bench

import (
	"os"
	"testing"
)

// brokerURL returns the AMQP URL of the broker the end-to-end tests use:
// PERFTEST_TEST_URL when set (e.g. a RabbitMQ started with
// /work/shared/peers/rabbitmq.sh), else the in-process broker from
// server/servertest once it exists.
func brokerURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("PERFTEST_TEST_URL"); u != "" {
		return u
	}
	t.Skip("no in-process broker yet; set PERFTEST_TEST_URL")
	return ""
}
