package management

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// Service is the API's listener and HTTP server.
type Service struct {
	hs   *http.Server
	ln   net.Listener
	done chan struct{}
	once sync.Once
	err  error

	mu    sync.Mutex             // guards fresh
	fresh map[net.Conn]time.Time // connections that have sent no request yet, since when
}

// Serve listens on addr and serves h there until Close; its one serving
// goroutine (net/http's per-connection ones under it) is owned by the
// Service.
func Serve(addr string, h http.Handler) (*Service, error) { return ServeTLS(addr, h, nil) }

// ServeTLS is Serve over HTTPS with cfg (plain HTTP when cfg is nil).
func ServeTLS(addr string, h http.Handler, cfg *tls.Config) (*Service, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := &Service{ln: ln, done: make(chan struct{}), fresh: map[net.Conn]time.Time{},
		hs: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}}
	s.hs.ConnState = s.track
	go func() {
		defer close(s.done)
		_ = s.hs.Serve(ln)
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// track keeps the connections that have not sent a request yet, which
// Shutdown would wait 5 s for: a client such as Go's dials a spare
// connection it may never use.
func (s *Service) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = time.Now()
	} else {
		delete(s.fresh, c)
	}
}

// closeFresh closes the connections that have sent no request for
// longer than freshGrace.
func (s *Service) closeFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, since := range s.fresh {
		if time.Since(since) > freshGrace {
			c.Close()
			delete(s.fresh, c)
		}
	}
}

// freshGrace is how long a closing Service waits for the first request
// on a new connection: a client that connected to send one sends it at
// once.
const freshGrace = 200 * time.Millisecond

// Close stops the listener and waits up to timeout for requests in
// flight, then closes what is left; it returns once the serving goroutine
// has ended. Calls after the first return the first one's result.
func (s *Service) Close(timeout time.Duration) error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		// The listener is closed here rather than by Shutdown, so that
		// no connection arrives after closeFresh looks.
		_ = s.ln.Close()
		<-s.done
		shut := make(chan error, 1)
		go func() { shut <- s.hs.Shutdown(ctx) }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case s.err = <-shut:
				break wait
			case <-tick.C:
				s.closeFresh()
			}
		}
		if s.err != nil {
			s.err = s.hs.Close()
		}
		if c, ok := s.hs.Handler.(interface{ Close() }); ok {
			c.Close() // a Handler's sampling round
		}
	})
	return s.err
}
