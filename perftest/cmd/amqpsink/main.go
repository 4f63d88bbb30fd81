// Command amqpsink is a null AMQP 0-9-1 broker for measuring perftest's own
// ceiling (bench.Sink): it decodes and discards publishes, confirms them in
// confirm mode, and feeds every consumer an endless stream of deliveries.
// Nothing published is routed. It prints the rates it sees every -interval
// on stderr.
//
//	amqpsink -addr 127.0.0.1:5698 -size 16 &
//	perftest -h amqp://guest:guest@127.0.0.1:5698/ -x 1 -y 0 -s 16 -z 10 --publisher buffered
//	perftest -h amqp://guest:guest@127.0.0.1:5698/ -x 0 -y 1 -a -z 10
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/amqp-go/amqp-go/perftest/bench"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5698", "listen address")
	size := flag.Int("size", bench.HeaderSize, "body size of generated deliveries")
	interval := flag.Duration("interval", time.Second, "report interval (0: none)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "amqpsink:", err)
		os.Exit(1)
	}
	s := &bench.Sink{DeliverySize: *size}
	fmt.Fprintf(os.Stderr, "amqpsink: listening on %s\n", ln.Addr())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = s.Close()
	}()
	if *interval > 0 {
		go func() {
			var pp, pd int64
			for range time.Tick(*interval) {
				p, d := s.Published.Load(), s.Delivered.Load()
				if p != pp || d != pd {
					fmt.Fprintf(os.Stderr, "amqpsink: published %d msg/s, delivered %d msg/s\n",
						int64(float64(p-pp)/interval.Seconds()), int64(float64(d-pd)/interval.Seconds()))
				}
				pp, pd = p, d
			}
		}()
	}
	_ = s.Serve(ln)
}
