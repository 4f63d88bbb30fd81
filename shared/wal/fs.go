package wal

import (
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// FS is the small file-system surface the log uses. The real implementation
// is OSFS; MemFS is an in-memory implementation whose Crash method discards
// everything that was not synced, for crash tests.
//
// Implementations must be safe for concurrent use by multiple goroutines.
type FS interface {
	// Create creates or truncates the named file for reading and writing;
	// OSFS gives it FileMode.
	Create(name string) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	// OpenFile opens a file with os.OpenFile flags. The log writes segment
	// files only sequentially (with O_APPEND); MemFS treats every write as
	// an append. With O_CREATE, OSFS gives the file exactly perm, whatever
	// the umask.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes the named file.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// ReadDir returns the sorted names of the entries of dir.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents; OSFS gives dir exactly perm,
	// even if it existed.
	MkdirAll(dir string, perm os.FileMode) error
	// Lock takes an exclusive, non-blocking lock on the named file (creating
	// it if needed). It returns ErrLocked if another holder has it. Closing
	// the returned io.Closer releases the lock.
	Lock(name string) (io.Closer, error)
	// SyncDir makes the directory entries of dir durable.
	SyncDir(dir string) error
}

// File is an open file of an FS. Sync must make all written data durable
// (on Linux the OS implementation uses fdatasync).
type File interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
}

// OSFS is the real operating-system file system.
type OSFS struct{}

type osFile struct{ *os.File }

// Sync flushes the file's data with fdatasync (fsync off Linux).
func (f osFile) Sync() error { return fdatasync(f.File) }

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	return OSFS{}.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, FileMode)
}

// Open implements FS.
func (OSFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_CREATE != 0 {
		if err := f.Chmod(perm); err != nil {
			f.Close()
			return nil, err
		}
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	return os.Chmod(dir, perm)
}

// Chmod changes the mode of the named file.
func (OSFS) Chmod(name string, mode os.FileMode) error { return os.Chmod(name, mode) }

// Lock implements FS with flock(2) where available.
func (OSFS) Lock(name string) (io.Closer, error) { return lockFile(name) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrCrashed is returned by handles of a MemFS opened before its last Crash.
var ErrCrashed = errors.New("wal: memfs crashed; handle is stale")

// MemFS is an in-memory FS for tests. Written data becomes durable only
// when the file is synced; Crash throws away the rest (optionally keeping a
// random prefix of the unsynced bytes, as a torn write would). Directory
// operations (create, remove, rename, truncate) are durable at once.
// All methods are safe for concurrent use; one mutex guards the whole FS.
type MemFS struct {
	mu       sync.Mutex
	files    map[string]*memFile
	dirs     map[string]bool
	locks    map[string]bool
	gen      uint64
	syncErr  error
	writeErr error
}

type memFile struct {
	data    []byte
	durable int // data[:durable] survives a crash
	mtime   time.Time
}

// NewMemFS returns an empty in-memory file system.
func NewMemFS() *MemFS {
	return &MemFS{files: map[string]*memFile{}, dirs: map[string]bool{}, locks: map[string]bool{}}
}

// Crash simulates a power loss: every open handle goes stale, locks are
// released and each file keeps only its synced bytes. If tear is non-nil a
// random prefix (chosen with tear) of each file's unsynced bytes survives.
func (m *MemFS) Crash(tear *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.locks = map[string]bool{}
	names := make([]string, 0, len(m.files))
	for n := range m.files {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic use of tear
	for _, n := range names {
		f := m.files[n]
		keep := f.durable
		if tear != nil && len(f.data) > keep {
			keep += tear.Intn(len(f.data) - keep + 1)
		}
		f.data = append([]byte(nil), f.data[:keep]...)
		f.durable = keep
	}
}

// FailSyncs makes every later Sync fail with err (nil restores success).
func (m *MemFS) FailSyncs(err error) {
	m.mu.Lock()
	m.syncErr = err
	m.mu.Unlock()
}

// FailWrites makes every later Write fail with err (nil restores success).
func (m *MemFS) FailWrites(err error) {
	m.mu.Lock()
	m.writeErr = err
	m.mu.Unlock()
}

// ReadFile returns a copy of the current (not necessarily durable) content.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[filepath.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), f.data...), nil
}

// WriteFile replaces the content of name durably (for tests that corrupt).
func (m *MemFS) WriteFile(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[filepath.Clean(name)] = &memFile{data: append([]byte(nil), data...), durable: len(data), mtime: time.Now()}
}

type memHandle struct {
	fs       *MemFS
	name     string
	f        *memFile
	gen      uint64
	readOnly bool
	closed   bool
}

func (m *MemFS) open(name string, flag int) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if !m.dirs[filepath.Dir(name)] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, ok := m.files[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		f = &memFile{mtime: time.Now()}
		m.files[name] = f
	}
	if flag&os.O_TRUNC != 0 {
		f.data = nil
		f.durable = 0
	}
	ro := flag&(os.O_WRONLY|os.O_RDWR) == 0
	return &memHandle{fs: m, name: name, f: f, gen: m.gen, readOnly: ro}, nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	return m.open(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open(name, os.O_RDONLY) }

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	return m.open(name, flag)
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if _, ok := m.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	f, ok := m.files[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(m.files, oldname)
	m.files[newname] = f
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for n := range m.files {
		if filepath.Dir(n) == dir {
			names = append(names, filepath.Base(n))
		}
	}
	for d := range m.dirs {
		if d != dir && filepath.Dir(d) == dir {
			names = append(names, filepath.Base(d))
		}
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if d == filepath.Dir(d) || strings.TrimSpace(d) == "." {
			return nil
		}
	}
}

type memLock struct {
	fs   *MemFS
	name string
	gen  uint64
}

func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if l.fs.gen == l.gen {
		delete(l.fs.locks, l.name)
	}
	return nil
}

// Lock implements FS. Locks are released by Crash.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if m.locks[name] {
		return nil, ErrLocked
	}
	m.locks[name] = true
	if _, ok := m.files[name]; !ok {
		m.files[name] = &memFile{mtime: time.Now()}
	}
	return &memLock{fs: m, name: name, gen: m.gen}, nil
}

// SyncDir implements FS (a no-op: directory operations are durable at once).
func (m *MemFS) SyncDir(string) error { return nil }

func (h *memHandle) check() error {
	if h.closed {
		return fs.ErrClosed
	}
	if h.gen != h.fs.gen {
		return ErrCrashed
	}
	return nil
}

func (h *memHandle) Write(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	if h.readOnly {
		return 0, &fs.PathError{Op: "write", Path: h.name, Err: fs.ErrPermission}
	}
	if h.fs.writeErr != nil {
		return 0, h.fs.writeErr
	}
	h.f.data = append(h.f.data, p...)
	h.f.mtime = time.Now()
	return len(p), nil
}

func (h *memHandle) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(h.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *memHandle) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return err
	}
	if h.fs.syncErr != nil {
		return h.fs.syncErr
	}
	h.f.durable = len(h.f.data)
	return nil
}

func (h *memHandle) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return err
	}
	if size < int64(len(h.f.data)) {
		h.f.data = h.f.data[:size]
	} else {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	if h.f.durable > len(h.f.data) {
		h.f.durable = len(h.f.data)
	}
	return nil
}

func (h *memHandle) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return fs.ErrClosed
	}
	h.closed = true
	return nil
}

type memInfo struct {
	name  string
	size  int64
	mtime time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() os.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return i.mtime }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

func (h *memHandle) Stat() (os.FileInfo, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check(); err != nil {
		return nil, err
	}
	return memInfo{name: filepath.Base(h.name), size: int64(len(h.f.data)), mtime: h.f.mtime}, nil
}
