package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/amqp-go/amqp-go/server/config"
)

// pidFile is a written, locked pidfile.
type pidFile struct {
	path string
	f    *os.File
}

// writePIDFile takes an exclusive lock on path and writes our pid into it.
// The lock, not the file's existence, says an instance runs: a pidfile left
// by a killed process is simply taken over.
func writePIDFile(path string) (*pidFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("server.pidfile: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(f)
		f.Close()
		return nil, fmt.Errorf("server.pidfile %s: %w: another amqp-server (pid %s) holds it", path, errAlreadyRunning, strings.TrimSpace(string(b)))
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("server.pidfile: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("server.pidfile: %w", err)
	}
	return &pidFile{path: path, f: f}, nil
}

// remove deletes the pidfile, then releases the lock.
func (p *pidFile) remove() {
	os.Remove(p.path)
	p.f.Close()
}

// pidFileFree reports whether no running instance holds the pidfile.
func pidFileFree(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server.pidfile: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(f)
		return fmt.Errorf("server.pidfile %s: %w: another amqp-server (pid %s) holds it", path, errAlreadyRunning, strings.TrimSpace(string(b)))
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// daemonize starts this command again detached (its own session, stdio on
// /dev/null) and returns once the child reports that it is serving, or
// with the child's start-up error.
func daemonize(cfg config.Config) error {
	if err := pidFileFree(cfg.Server.PIDFile); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonChildEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w} // fd 3: the readiness pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("daemonize: %w", err)
	}
	w.Close()
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "ok" {
		if line == "" {
			line = "exited before it was ready"
		}
		return fmt.Errorf("daemon (pid %d): %s", pid, strings.TrimPrefix(line, "error: "))
	}
	fmt.Printf("amqp-server running in the background, pid %d\n", pid)
	return nil
}

// readyPipe returns how the daemon child reports start-up to its parent:
// nil for success or the error that stops it. Only the first call counts.
func readyPipe() func(error) {
	f := os.NewFile(3, "ready")
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			if f == nil {
				return
			}
			if err != nil {
				fmt.Fprintf(f, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			} else {
				fmt.Fprintln(f, "ok")
			}
			f.Close()
		})
	}
}

// logFile is the log destination: stderr, or a file reopened on SIGHUP
// (after logrotate moved it).
type logFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.Stderr.Write(p)
	}
	return l.f.Write(p)
}

// Reopen opens the path again and switches to it.
func (l *logFile) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file, if any.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// openLog makes the logger the configuration asks for.
func openLog(s config.Server) (*logFile, *slog.Logger, error) {
	lf := &logFile{path: s.LogFile}
	if s.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(s.LogFile), 0o755); err != nil {
			return nil, nil, fmt.Errorf("server.logfile: %w", err)
		}
		if err := lf.Reopen(); err != nil {
			return nil, nil, fmt.Errorf("server.logfile: %w", err)
		}
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(s.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(lf, opts)
	if s.LogFormat == "json" {
		h = slog.NewJSONHandler(lf, opts)
	}
	return lf, slog.New(h), nil
}
