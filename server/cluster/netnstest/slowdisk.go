package netnstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// blkioRoot is the cgroup v1 blkio hierarchy's mount point.
const blkioRoot = "/sys/fs/cgroup/blkio"

// ThrottleWrites makes the disk slow for process pid: it moves pid into a
// blkio cgroup of its own that lets it issue at most iops write requests a
// second to the block device holding dir (cgroup v1's
// blkio.throttle.write_iops_device; an fdatasync's writeback is issued by
// the caller, so it is throttled too). The returned func moves pid back
// and removes the cgroup; the test's cleanup does the same. It skips the
// test where there is no cgroup v1 blkio hierarchy.
func ThrottleWrites(t testing.TB, pid int, dir string, iops int) (restore func()) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(blkioRoot, "blkio.throttle.write_iops_device")); err != nil {
		t.Skipf("no cgroup v1 blkio throttling here (%v)", err)
	}
	dev, err := wholeDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(blkioRoot, fmt.Sprintf("amqc-slow-%d", pid))
	if err := os.Mkdir(cg, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	write := func(file, v string) error { return os.WriteFile(file, []byte(v), 0o644) }
	if err := write(filepath.Join(cg, "blkio.throttle.write_iops_device"), fmt.Sprintf("%s %d", dev, iops)); err != nil {
		_ = os.Remove(cg)
		t.Fatalf("throttling %s: %v", dev, err)
	}
	if err := write(filepath.Join(cg, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		_ = os.Remove(cg)
		t.Fatalf("moving pid %d into %s: %v", pid, cg, err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		// The process may have exited; then the cgroup is empty anyway.
		_ = write(filepath.Join(blkioRoot, "cgroup.procs"), strconv.Itoa(pid))
		if err := os.Remove(cg); err != nil && !os.IsNotExist(err) {
			t.Errorf("removing %s: %v", cg, err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// wholeDisk returns "major:minor" of the disk (not the partition) that
// holds dir: the throttle takes whole devices.
func wholeDisk(dir string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return "", err
	}
	d := uint64(st.Dev)
	major := (d>>8)&0xfff | (d>>32)&^uint64(0xfff)
	minor := d&0xff | (d>>12)&^uint64(0xff)
	id := fmt.Sprintf("%d:%d", major, minor)
	sys := filepath.Join("/sys/dev/block", id)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		parent, err := os.ReadFile(filepath.Join(sys, "..", "dev"))
		if err != nil {
			return "", fmt.Errorf("the disk of partition %s: %w", id, err)
		}
		id = strings.TrimSpace(string(parent))
	} else if _, err := os.Stat(sys); err != nil {
		return "", fmt.Errorf("%s is on device %s, which is not a block device (%v)", dir, id, err)
	}
	return id, nil
}
