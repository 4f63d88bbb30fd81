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
	s := &Service{ln: ln, done: make(chan struct{}),
		hs: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}}
	go func() {
		defer close(s.done)
		_ = s.hs.Serve(ln)
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and waits up to timeout for requests in
// flight, then closes what is left; it returns once the serving goroutine
// has ended. Calls after the first return the first one's result.
func (s *Service) Close(timeout time.Duration) error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if s.err = s.hs.Shutdown(ctx); s.err != nil {
			s.err = s.hs.Close()
		}
		<-s.done
		if c, ok := s.hs.Handler.(interface{ Close() }); ok {
			c.Close() // a Handler's sampling round
		}
	})
	return s.err
}
