package broker

import (
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// serverConn starts a broker with cfg, connects a raw client socket and
// returns the server side of it.
func serverConn(t *testing.T, cfg Config) *net.TCPConn {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(cfg)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		for sc := range s.conns {
			s.mu.Unlock()
			return sc.nc.(*net.TCPConn)
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no server connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sockopt(t *testing.T, c *net.TCPConn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) })
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// network.tcpkeepalive and network.writebuffersize reach the sockets.
func TestSocketOptions(t *testing.T) {
	sc := serverConn(t, Config{TCPKeepAlive: 42 * time.Second, WriteBufferSize: 64 << 10})
	if v := sockopt(t, sc, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 1 {
		t.Errorf("SO_KEEPALIVE %d", v)
	}
	if v := sockopt(t, sc, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); v != 42 {
		t.Errorf("TCP_KEEPIDLE %d, want 42", v)
	}
	if v := sockopt(t, sc, syscall.SOL_SOCKET, syscall.SO_SNDBUF); v != 2*64<<10 { // Linux doubles it
		t.Errorf("SO_SNDBUF %d, want %d", v, 2*64<<10)
	}
	off := serverConn(t, Config{TCPKeepAlive: -1})
	if v := sockopt(t, off, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 0 {
		t.Errorf("keepalive off: SO_KEEPALIVE %d", v)
	}
}

// network.readbuffersize reaches the server's configuration, from which
// every connection's frame reader is sized.
func TestReadBufferSizeConfig(t *testing.T) {
	s := New(Config{ReadBufferSize: 12345})
	if s.cfg.ReadBufferSize != 12345 {
		t.Errorf("ReadBufferSize %d", s.cfg.ReadBufferSize)
	}
}
