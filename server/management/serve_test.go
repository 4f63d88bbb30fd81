package management_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/management"
)

// A connection that never sends a request (a client's spare dial) does
// not hold a stopping API up for Shutdown's 5 s, and a request in flight
// when Close is called is still answered.
func TestCloseSkipsSilentConnections(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "answered")
	})
	svc, err := management.Serve("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", svc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + svc.Addr().String() + "/")
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- string(b)
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- svc.Close(10 * time.Second) }()
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Close waited for a connection that sent no request")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("Close returned in %v, before the request in flight was answered", took)
	}
	if got := <-answer; got != "answered" {
		t.Fatalf("the request in flight got %q", got)
	}
	_ = silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection is still open")
	}
}
