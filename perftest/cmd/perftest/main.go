// Command perftest is a throughput and latency tester for AMQP 0.9.1 brokers,
// compatible with RabbitMQ PerfTest's flags and output. See package
// github.com/amqp-go/amqp-go/perftest/bench.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/amqp-go/amqp-go/perftest/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
