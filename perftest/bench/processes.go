package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// childReady is the line a child process prints once its producers or
// consumers are set up.
const childReady = "perftest child ready"

// childStartTimeout bounds how long a consumer child may take to set up.
const childStartTimeout = 10 * time.Minute

// childProc is one re-executed perftest.
type childProc struct {
	role   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	ready  chan struct{}
	tail   []string // its last report lines, for errors
	done   chan error
}

// split divides n agents into k contiguous groups, as even as possible.
func split(n, k int) [][2]int {
	if n == 0 {
		return nil
	}
	k = max(1, min(k, n))
	var out [][2]int
	first := 0
	for i := range k {
		cnt := n / k
		if i < n%k {
			cnt++
		}
		out = append(out, [2]int{first, cnt})
		first += cnt
	}
	return out
}

// childArgs is the parent's command line without the process flags, for a
// child running count agents of role from first, with the parent's test id
// and routing key (a random one would differ in every process).
func childArgs(argv []string, role string, first, count int, runTag uint16, id, key string) []string {
	var out []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		name := strings.TrimLeft(a, "-")
		base, _, hasValue := strings.Cut(name, "=")
		if base == "producer-processes" || base == "consumer-processes" {
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return append(out, "--child-role", role, "--child-first", strconv.Itoa(first),
		"--child-count", strconv.Itoa(count), "--run-tag", strconv.Itoa(int(runTag)+1), "-d", id, "-k", key, "--json")
}

func (r *runner) mine(role string, i int) bool {
	c := &r.cfg
	if c.childRole == "" {
		return true
	}
	return c.childRole == role && i >= c.childFirst && i < c.childFirst+c.childCount
}

// runProcesses runs the producers and consumers in child processes
// (--producer-processes, --consumer-processes): it declares the topology,
// starts the consumer children, waits until they are set up, starts the
// producer children, waits for all, merges their results (counts summed,
// rates summed, latency histograms merged), and cleans up. Without the
// process flag of a role, that role runs in one child.
func runProcesses(ctx context.Context, cfg Config, topo *topology, out io.Writer) (*Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, out: out, topo: topo, runTag: uint16(time.Now().UnixNano()),
		trackers: map[string]*QueueTracker{}, serverQ: map[string]bool{}}
	defer r.closeAll()
	if err := r.declare(); err != nil {
		return nil, err
	}
	start := func(role string, g [2]int) *childProc {
		p := &childProc{role: role, ready: make(chan struct{}), done: make(chan error, 1)}
		p.cmd = exec.Command(exe, childArgs(cfg.argv, role, g[0], g[1], r.runTag, cfg.ID, cfg.RoutingKey)...)
		p.cmd.Env = append(os.Environ(), "PERFTEST_CHILD=1")
		p.cmd.Stdout = &p.stdout
		errPipe, err := p.cmd.StderrPipe()
		if err != nil {
			p.done <- err
			return p
		}
		if err := p.cmd.Start(); err != nil {
			p.done <- err
			return p
		}
		fmt.Fprintf(out, "id: %s, started %s #%d-#%d in process %d\n", cfg.ID, role, g[0], g[0]+g[1]-1, p.cmd.Process.Pid)
		go func() {
			sc := bufio.NewScanner(errPipe)
			signalled := false
			for sc.Scan() {
				line := sc.Text()
				if !signalled && line == childReady {
					close(p.ready)
					signalled = true
					continue
				}
				p.tail = append(p.tail, line)
				if len(p.tail) > 5 {
					p.tail = p.tail[1:]
				}
			}
			p.done <- p.cmd.Wait()
		}()
		return p
	}
	var kids []*childProc
	var errs []error
	wait := func(p *childProc) {
		if err := <-p.done; err != nil {
			errs = append(errs, fmt.Errorf("%s process: %v: %s", p.role, err, strings.Join(p.tail, " | ")))
		}
	}
	stopAll := func() {
		for _, p := range kids {
			if p.cmd.Process != nil {
				_ = p.cmd.Process.Signal(syscall.SIGINT)
			}
		}
	}
	nCons := cfg.ConsumerProcesses
	nProd := cfg.ProducerProcesses
	var finished []*childProc
	for _, g := range split(cfg.Consumers, nCons) {
		p := start("consumers", g)
		kids = append(kids, p)
		t := time.NewTimer(childStartTimeout)
		select {
		case <-p.ready:
		case err := <-p.done:
			p.done <- err
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	for _, g := range split(cfg.Producers, nProd) {
		kids = append(kids, start("producers", g))
	}
	go func() {
		<-ctx.Done()
		stopAll()
	}()
	for _, p := range kids {
		wait(p)
		finished = append(finished, p)
	}
	res := &Result{ID: cfg.ID, StopReason: ReasonTimeLimit}
	lat, conf := newHist(), newHist()
	for _, p := range finished {
		var cr Result
		if err := json.Unmarshal(p.stdout.Bytes(), &cr); err != nil {
			errs = append(errs, fmt.Errorf("%s process: no result: %v", p.role, err))
			continue
		}
		res.Sent += cr.Sent
		res.Confirmed += cr.Confirmed
		res.Nacked += cr.Nacked
		res.Returned += cr.Returned
		res.Received += cr.Received
		res.Requeued += cr.Requeued
		res.SendRate += cr.SendRate
		res.ReceiveRate += cr.ReceiveRate
		res.Duplicates += cr.Duplicates
		res.OutOfOrder += cr.OutOfOrder
		res.Unconfirmed += cr.Unconfirmed
		res.DurationS = max(res.DurationS, cr.DurationS)
		if cr.StopReason != ReasonTimeLimit {
			res.StopReason = cr.StopReason
		}
		for _, e := range cr.Errors {
			errs = append(errs, fmt.Errorf("%s process: %s", p.role, e))
		}
		if cr.LatencyHist != nil {
			lat.Merge(hdr.Import(cr.LatencyHist))
		}
		if cr.ConfirmHist != nil {
			conf.Merge(hdr.Import(cr.ConfirmHist))
		}
	}
	res.LatencyUS = LatencyOf(lat)
	if cfg.Confirm > 0 && cfg.Producers > 0 {
		l := LatencyOf(conf)
		res.ConfirmLatencyUS = &l
	}
	fmt.Fprintf(out, "id: %s, test stopped (%s)\n", cfg.ID, res.StopReason)
	r.cleanup()
	res.PerftestCPUS = ownCPU()
	fmt.Fprint(out, r.reporter().Summary(res))
	if res.Unconfirmed > 0 {
		errs = append(errs, fmt.Errorf("%d messages unconfirmed at the end of the run", res.Unconfirmed))
	}
	for _, e := range errs {
		res.Errors = append(res.Errors, e.Error())
	}
	return res, errors.Join(errs...)
}
