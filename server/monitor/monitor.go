// Package monitor raises the broker's resource alarms: memory, when the
// process's resident memory passes a limit, and disk, when free space under
// the data directory falls below a limit.
package monitor

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Reasons sent in connection.blocked, as RabbitMQ words them.
const (
	MemoryReason = "low on memory"
	DiskReason   = "low on disk"
)

// Options configures a Monitor.
type Options struct {
	// MemoryLimit is the resident-memory threshold in bytes (0: no memory
	// alarm). See MemoryLimit for deriving it from a percentage.
	MemoryLimit int64
	// DiskPath is measured for free space; the nearest existing parent is
	// used if it does not exist yet.
	DiskPath string
	// DiskFreeLimit is the free-space threshold in bytes (0: no disk alarm).
	DiskFreeLimit int64
	// Interval between measurements (default 1s).
	Interval time.Duration
	// SetAlarm is told when the combined alarm is raised or cleared.
	SetAlarm func(reason string, on bool)
	// Freed, if set, is the bytes of messages the broker has let go of so
	// far (it only grows): see releaseIdleMemory.
	Freed func() int64
}

// State is the latest measurement.
type State struct {
	RSS         int64 // resident memory of the process, bytes
	MemoryLimit int64
	DiskFree    int64 // bytes free for unprivileged users under DiskPath
	DiskLimit   int64
	MemoryAlarm bool
	DiskAlarm   bool
}

// Monitor measures periodically and drives SetAlarm.
type Monitor struct {
	opt  Options
	mu   sync.Mutex
	st   State
	stop chan struct{}
	done chan struct{}
	// lastGC is when check last collected garbage to confirm an alarm
	// (loop goroutine only).
	lastGC time.Time
	// releaseIdleMemory's state (loop goroutine only): the collector's
	// cycle count at the last check, since when it has not changed, and
	// Freed at the last release (or the first check).
	cycles     uint64
	quietSince time.Time
	freedAt    int64
}

// gcConfirmInterval is how often, at most, a memory reading over the limit
// is confirmed by a garbage collection: memory released by closed
// connections counts as in use until a collection runs, and an idle broker
// may not run one for minutes, which would keep publishers blocked.
const gcConfirmInterval = 5 * time.Second

// Start measures once at once, then every Interval until Stop.
func Start(opt Options) *Monitor {
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	m := &Monitor{opt: opt, stop: make(chan struct{}), done: make(chan struct{})}
	m.st.MemoryLimit, m.st.DiskLimit = opt.MemoryLimit, opt.DiskFreeLimit
	m.check()
	go m.loop()
	return m
}

// Stop ends the measurements.
func (m *Monitor) Stop() {
	close(m.stop)
	<-m.done
}

// State returns the latest measurement.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

func (m *Monitor) loop() {
	defer close(m.done)
	t := time.NewTicker(m.opt.Interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.check()
		}
	}
}

func (m *Monitor) check() {
	m.releaseIdleMemory(time.Now())
	m.mu.Lock()
	prev := m.st
	m.mu.Unlock()
	st := prev
	if rss, err := RSS(); err == nil {
		st.RSS = rss
	}
	if m.opt.MemoryLimit > 0 {
		// The alarm follows the memory the process actually uses, not RSS:
		// Go returns freed pages to the OS lazily, so a drained broker's RSS
		// can sit above the limit for minutes and keep publishers blocked.
		// (RabbitMQ likewise counts what its VM has allocated.)
		inUse := InUse()
		if inUse >= m.opt.MemoryLimit && time.Since(m.lastGC) >= gcConfirmInterval {
			m.lastGC = time.Now()
			runtime.GC()
			inUse = InUse()
		}
		st.MemoryAlarm = inUse >= m.opt.MemoryLimit
	}
	if free, err := DiskFree(m.opt.DiskPath); err == nil {
		st.DiskFree = free
		st.DiskAlarm = m.opt.DiskFreeLimit > 0 && free < m.opt.DiskFreeLimit
	}
	m.mu.Lock()
	m.st = st
	m.mu.Unlock()
	if st.MemoryAlarm == prev.MemoryAlarm && st.DiskAlarm == prev.DiskAlarm {
		return
	}
	var reasons []string
	if st.MemoryAlarm {
		reasons = append(reasons, MemoryReason)
	}
	if st.DiskAlarm {
		reasons = append(reasons, DiskReason)
	}
	if m.opt.SetAlarm != nil {
		m.opt.SetAlarm(strings.Join(reasons, " & "), len(reasons) > 0)
	}
}

// An idle heap's garbage is collected and returned to the OS once the
// collector has not run for releaseQuiet while the broker let go of at
// least releaseFreed bytes of messages since the last release: a backlog
// that expired, was purged or drained stays in the heap until the next
// collection, which nothing triggers while nothing allocates (Go forces
// one every 2 minutes and returns the pages later still), so RSS stayed
// gigabytes over the baseline after a million messages expired (B16). A
// collection that runs meanwhile does not settle it: Go keeps the pages
// it frees and returns them only at its scavenger's slow pace, and one
// that began before the backlog went frees none of it. A busy broker
// collects on its own and never waits releaseQuiet.
const (
	releaseQuiet = 3 * time.Second
	releaseFreed = 64 << 20
)

// cyclesSample reads the collector's completed cycles.
var cyclesSample = []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}

// releaseIdleMemory runs debug.FreeOSMemory (a collection, then every
// free page back to the OS) when the heap is quiet with garbage in it:
// see releaseQuiet.
func (m *Monitor) releaseIdleMemory(now time.Time) {
	if m.opt.Freed == nil {
		return
	}
	s := make([]metrics.Sample, 1)
	copy(s, cyclesSample)
	metrics.Read(s)
	freed := m.opt.Freed()
	if m.quietSince.IsZero() {
		m.freedAt = freed
	}
	if c := s[0].Value.Uint64(); c != m.cycles || m.quietSince.IsZero() {
		m.cycles, m.quietSince = c, now
		return
	}
	if now.Sub(m.quietSince) < releaseQuiet || freed-m.freedAt < releaseFreed {
		return
	}
	debug.FreeOSMemory()
	metrics.Read(s)
	m.cycles, m.quietSince, m.freedAt = s[0].Value.Uint64(), now, freed
}

// inUseSamples are the runtime metrics InUse reads.
var inUseSamples = []metrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
}

// InUse is the memory the Go runtime has mapped and not freed: live and
// not yet swept heap objects, stacks and runtime metadata. It drops as soon
// as a collection frees messages, unlike RSS.
func InUse() int64 {
	s := make([]metrics.Sample, len(inUseSamples))
	copy(s, inUseSamples)
	metrics.Read(s)
	total := int64(s[0].Value.Uint64())
	released := int64(s[1].Value.Uint64())
	free := int64(s[2].Value.Uint64())
	return total - released - free
}

// RSS is the process's resident memory in bytes (Linux /proc).
func RSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, errors.New("monitor: malformed /proc/self/statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// DiskFree is the space available to unprivileged users on the file system
// holding path, or its nearest existing parent.
func DiskFree(path string) (int64, error) {
	if path == "" {
		path = "."
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(p, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, syscall.ENOENT) || parent == p {
			return 0, err
		}
		p = parent
	}
}

// TotalMemory is the memory available to the process: the machine's, or
// the cgroup's limit if that is lower.
func TotalMemory() int64 {
	total := int64(0)
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
				total = kb << 10
			}
		}
		f.Close()
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}

// MemoryLimit turns the configuration into a byte threshold: limitBytes if
// set, else percent of TotalMemory (0 if both are 0).
func MemoryLimit(percent int, limitBytes int64) int64 {
	if limitBytes > 0 {
		return limitBytes
	}
	if percent <= 0 {
		return 0
	}
	return TotalMemory() / 100 * int64(percent)
}
