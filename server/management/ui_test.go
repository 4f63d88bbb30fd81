package management_test

// The web UI's tests: headless Chromium (Debian's chromium package) driven
// by chromedp against a real broker with real AMQP traffic. Each page is
// loaded, what a person sees is checked (counts, a chart with data points,
// a peeked message) and the important actions are clicked, their effect
// checked through the API or AMQP. Every wait is a poll with a deadline.
//
//	nice -n 10 go test -run TestUI ./server/management/
//	UPDATE_SCREENSHOTS=1 go test -run TestUIBrowser ./server/management/   # rewrites docs/ui/*.png
//
// Without chromium on PATH the browser test skips, except under CI=true,
// where it fails.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestUIServesAssets checks the UI's files at / and that /api is still the
// API's, without a browser.
func TestUIServesAssets(t *testing.T) {
	a := startAPI(t)
	root := strings.TrimSuffix(a.base, "/api")
	get := func(path string) (int, http.Header, string) {
		resp, err := http.Get(root + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, body := get("/")
	if code != 200 || !strings.Contains(body, `<script type="module" src="app.js">`) {
		t.Fatalf("GET /: %d %q", code, body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, p := range []string{"/app.js", "/lib.js", "/chart.js", "/paged.js", "/publish.js", "/style.css", "/pages/overview.js", "/pages/storage.js"} {
		if code, h, _ := get(p); code != 200 || h.Get("Content-Type") == "" {
			t.Errorf("GET %s: %d %q", p, code, h.Get("Content-Type"))
		}
	}
	if code, _, _ := get("/pages/"); code != 404 {
		t.Errorf("GET /pages/: %d, want 404 (no listings)", code)
	}
	if code, _, _ := get("/nope.js"); code != 404 {
		t.Errorf("GET /nope.js: %d", code)
	}
	if code, h, _ := get("/api/overview"); code != 401 || h.Get("Content-Type") != "application/json" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("GET /api/overview without auth: %d %q %q", code, h.Get("Content-Type"), h.Get("WWW-Authenticate"))
	}
	// The UI's calls: refused without a challenge, so no browser prompt.
	req, _ := http.NewRequest("GET", root+"/api/overview", nil)
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	req.SetBasicAuth("guest", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("the UI's refused call: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// chromiumPath finds Debian's chromium on PATH; without it the test skips,
// or fails under CI.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not on PATH, and CI=true: install Debian's chromium package (.ci/run does)")
	}
	t.Skip("chromium is not on PATH: apt-get install chromium to run the UI's browser tests")
	return ""
}

// uiEnv is a broker with traffic, the API and a browser tab on the UI.
type uiEnv struct {
	t    *testing.T
	a    *api
	root string // http://host:port
	ctx  context.Context
}

// step runs browser actions with a deadline.
func (e *uiEnv) step(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// uiPoll waits (15 s at most) until the JavaScript expression is truthy and
// returns its value.
func uiPoll[T any](t *testing.T, e *uiEnv, what, expr string) T {
	t.Helper()
	v, err := uiPollFor[T](e, 14*time.Second, expr)
	if err != nil {
		msg, _ := chromedp.Run(e.ctx, chromedp.Evaluate[string](`(document.querySelector('#toast:not([hidden])')||{}).textContent||''`))
		dbg, _ := chromedp.Run(e.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('svg[data-chart]')].map(s => s.dataset.chart + ' ' + s.dataset.points + ' ' + [...s.querySelectorAll('polyline')].map(p => p.dataset.series + '=' + p.dataset.last).join(',')).join('; ')`))
		t.Logf("charts on the page: %s", dbg)
		t.Fatalf("%s: waiting for %s: %v (toast: %q)", what, expr, err, msg)
	}
	return v
}

// uiPollFor polls the JavaScript expression every 50 ms for at most d
// until it is truthy; an expression that throws (an element not rendered
// yet) is falsy.
func uiPollFor[T any](e *uiEnv, d time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(e.ctx, d+time.Second)
	defer cancel()
	safe := fmt.Sprintf("(() => { try { return (%s); } catch (e) { return false; } })()", expr)
	return chromedp.Run(ctx, chromedp.Poll[T](safe, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// within reports whether the JavaScript expression turns truthy within d.
func (e *uiEnv) within(d time.Duration, expr string) bool {
	_, err := uiPollFor[bool](e, d, "!!("+expr+")")
	return err == nil
}

// confirm clicks a confirm button (ui/lib.js confirmButton) once to arm it
// and once more to act. A click lands where the button was when chromedp
// measured it; a refresh that moves the layout in between makes it miss,
// so each click is checked (armed, then not) and made again if it missed,
// as a person would. The caller checks the action's effect.
func (e *uiEnv) confirm(t *testing.T, what, sel string) {
	t.Helper()
	armed := fmt.Sprintf(`(b => !!b && b.classList.contains('armed'))(document.querySelector(%q))`, sel)
	for range 4 {
		if !uiJS[bool](t, e, armed) {
			e.step(t, what, chromedp.Click(chromedp.CSS(sel)))
			if !e.within(2*time.Second, armed) {
				continue
			}
		}
		e.step(t, "confirm "+what, chromedp.Click(chromedp.CSS(sel)))
		if e.within(2*time.Second, "!"+armed) { // acted, or gone with what it acted on
			return
		}
	}
	t.Fatalf("%s: %s never armed and acted after 4 tries", what, sel)
}

// uiJS evaluates an expression now.
func uiJS[T any](t *testing.T, e *uiEnv, expr string) T {
	t.Helper()
	v, err := chromedp.Run(e.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// open goes to a hash route and waits for its page.
func (e *uiEnv) open(t *testing.T, route, page string) {
	t.Helper()
	// The page shown now is marked stale, so the wait is for the new one
	// (hashchange fires after this returns; an unchanged hash, none).
	uiJS[any](t, e, fmt.Sprintf(`(r => {
		document.querySelectorAll('#main .page').forEach(p => p.dataset.stale = '1');
		if (location.hash === r) window.dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = r;
	})(%q); null`, route))
	uiPoll[bool](t, e, "open "+route, fmt.Sprintf(`!!document.querySelector('#main .page[data-page=%q]:not([data-stale])')`, page))
}

// shot saves a screenshot of the page as docs/ui/name.png when
// UPDATE_SCREENSHOTS=1.
func (e *uiEnv) shot(t *testing.T, name string) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	uiJS[any](t, e, `window.scrollTo(0, 0); document.getElementById('toast').hidden = true; null`)
	b, err := chromedp.Run(e.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// call sends an API request as guest and decodes a JSON reply.
func (e *uiEnv) call(t *testing.T, method, path, body string) (int, any) {
	t.Helper()
	req, err := http.NewRequest(method, e.a.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, path, b)
		}
	}
	return resp.StatusCode, v
}

// list GETs an API list as guest.
func (e *uiEnv) list(t *testing.T, path string) []map[string]any {
	t.Helper()
	code, v := e.call(t, "GET", path, "")
	l, ok := v.([]any)
	if code != 200 || !ok {
		t.Fatalf("GET %s: %d %v", path, code, v)
	}
	out := make([]map[string]any, len(l))
	for i, x := range l {
		out[i], _ = x.(map[string]any)
	}
	return out
}

// waitAPI polls an API path until ok(status, body) or fails after 10 s.
func (e *uiEnv) waitAPI(t *testing.T, what, path string, ok func(int, any) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, v := e.call(t, "GET", path, "")
		if ok(code, v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s still %d %v", what, path, code, v)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, under the deadline above
	}
}

func uiNum(v any, key string) float64 {
	m, _ := v.(map[string]any)
	f, _ := m[key].(float64)
	return f
}

// uiDial opens an AMQP connection with a connection_name beside the
// client properties amqp091-go sends by default.
func uiDial(t *testing.T, url, name string) *amqp.Connection {
	t.Helper()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	c, err := amqp.DialConfig(url, amqp.Config{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// uiPublish publishes bodies to queue q through the default
// exchange and waits for every confirm.
func uiPublish(t *testing.T, ch *amqp.Channel, q string, persistent bool, bodies ...[]byte) {
	t.Helper()
	mode := amqp.Transient
	if persistent {
		mode = amqp.Persistent
	}
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirm("", q, false, false, amqp.Publishing{DeliveryMode: mode, Body: b, ContentType: "text/plain"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			t.Fatalf("publish to %s: confirmed %v, %v", q, ok, err)
		}
	}
}

// TestUIBrowser loads every page of the UI in headless Chromium.
func TestUIBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	// Small segments, so the log has several and the oldest is pinned.
	a := startAPIWith(t, broker.Config{DataDir: t.TempDir(), SegmentSize: 64 << 10})
	e := &uiEnv{t: t, a: a, root: strings.TrimSuffix(a.base, "/api")}

	// Traffic: archive's 3, orders' 7 and jobs' 5 persistent messages go
	// into the first segment; 40 bodies of 4 KiB into bulk-00, then purged,
	// roll the log on; jobs has a consumer holding 2 unacked, one of them
	// redelivered after a nack; bulk-01 has a steady publisher and an
	// auto-ack consumer, for the rates.
	pub := uiDial(t, a.amqp, "ui-publisher")
	ch, err := pub.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	declare := func(name string) {
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"archive", "orders", "jobs"} {
		declare(q)
	}
	for i := range 24 {
		declare(fmt.Sprintf("bulk-%02d", i))
	}
	bodies := func(prefix string, n int) [][]byte {
		var out [][]byte
		for i := 1; i <= n; i++ {
			out = append(out, []byte(fmt.Sprintf("%s-%d", prefix, i)))
		}
		return out
	}
	uiPublish(t, ch, "archive", true, bodies("archive", 3)...)
	uiPublish(t, ch, "orders", true, bodies("order", 7)...)
	uiPublish(t, ch, "jobs", true, bodies("job", 5)...)
	big := make([][]byte, 40)
	for i := range big {
		big[i] = []byte(strings.Repeat("x", 4096))
	}
	uiPublish(t, ch, "bulk-00", true, big...)
	if _, err := ch.QueuePurge("bulk-00", false); err != nil {
		t.Fatal(err)
	}

	cons := uiDial(t, a.amqp, "ui-consumer")
	cch, err := cons.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := cch.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := cch.Consume("jobs", "ui-jobs-consumer", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := <-deliveries
	if err := first.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	redelivered := false
	for range 2 { // job-2, and job-1 again, redelivered: 2 unacked
		select {
		case d := <-deliveries:
			redelivered = redelivered || d.Redelivered
		case <-time.After(10 * time.Second):
			t.Fatal("jobs: no delivery after the nack")
		}
	}
	if !redelivered {
		t.Fatal("jobs: the nacked message did not come back redelivered")
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	rch, err := cons.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rch.Consume("bulk-01", "ui-rates", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pch, err := pub.Channel()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if pch.Publish("", "bulk-01", false, false, amqp.Publishing{Body: []byte("tick")}) != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	// The browser.
	// No sandbox: Chromium refuses to run as root with it, and a container
	// may lack the user namespaces it needs; the browser loads only this
	// test's server.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.DisableGPU, chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	e.ctx = ctx
	// The first run starts the browser, which lives as long as the context
	// it runs on: this one, not a step's, whose deadline would end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The page's console and uncaught exceptions, shown if the test fails.
	var consoleMu sync.Mutex
	var consoleLog []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			consoleMu.Lock()
			consoleLog = append(consoleLog, m.String())
			consoleMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(consoleLog, "\n"))
		}
	})

	login := t.Run("Login", func(t *testing.T) {
		e.step(t, "load", chromedp.Navigate(e.root+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
		e.step(t, "bad password", chromedp.SendKeys(chromedp.CSS("#login-user"), "guest"),
			chromedp.SendKeys(chromedp.CSS("#login-pass"), "wrong"), chromedp.Click(chromedp.CSS("#login-submit")))
		uiPoll[bool](t, e, "refused", `document.querySelector('#login-error').textContent.includes('Login failed')`)
		if got := uiJS[string](t, e, `sessionStorage.getItem('amqp-go.auth') || ''`); got != "" {
			t.Errorf("credentials kept after a failed login: %q", got)
		}
		uiJS[any](t, e, `sessionStorage.setItem('amqp-go.refresh', '300'); null`)
		uiPoll[bool](t, e, "password cleared", `document.querySelector('#login-pass').value === ''`)
		e.step(t, "type", chromedp.SendKeys(chromedp.CSS("#login-pass"), "guest"))
		if v := uiJS[string](t, e, `document.querySelector('#login-user').value + ':' + document.querySelector('#login-pass').value`); v != "guest:guest" {
			t.Fatalf("login form holds %q", v)
		}
		e.step(t, "log in", chromedp.Click(chromedp.CSS("#login-submit")))
		uiPoll[bool](t, e, "logged in", `!document.querySelector('#top').hidden && document.querySelector('#whoami').textContent === 'guest'`)
	})

	if !login {
		return
	}
	t.Run("Overview", func(t *testing.T) {
		// Once the server's history holds the messages queued before the
		// page opened, a freshly loaded page charts them at its first
		// render: ten minutes of the server's samples, not one of its own.
		e.waitAPI(t, "history", "/overview?lengths_age=600&lengths_incr=5", func(_ int, v any) bool {
			s, _ := v.(map[string]any)["queue_totals"].(map[string]any)["messages_details"].(map[string]any)["samples"].([]any)
			return len(s) > 0 && uiNum(s[0], "sample") >= 15
		})
		e.step(t, "reload", chromedp.Reload())
		uiPoll[bool](t, e, "first chart", `!!document.querySelector('svg[data-chart=queued]')`)
		first := uiJS[[]float64](t, e, `(c => [Number(c.dataset.points), Number(c.querySelector('polyline[data-series=total]').dataset.last)])(document.querySelector('svg[data-chart=queued]'))`)
		if len(first) != 2 || first[0] != 121 || first[1] < 15 {
			t.Errorf("queued chart at its first render: points and last total %v, want 121 and at least 15", first)
		}
		e.open(t, "#/", "overview")
		_, ov := e.call(t, "GET", "/overview", "")
		queues := uiNum(ov.(map[string]any)["object_totals"], "queues")
		uiPoll[bool](t, e, "queue total", fmt.Sprintf(`document.querySelector('#total-queues .v').textContent === %q`, strconv.Itoa(int(queues))))
		uiPoll[bool](t, e, "connections", `document.querySelector('#total-connections .v').textContent === '2'`)
		uiPoll[bool](t, e, "messages", `Number(document.querySelector('#total-messages .v').textContent.replace(/,/g, '')) >= 15`)
		// The charts fill with samples; the rates one shows the publisher.
		uiPoll[bool](t, e, "queued chart", `document.querySelector('svg[data-chart=queued]').dataset.points >= 3 &&
			Number(document.querySelector('svg[data-chart=queued] polyline[data-series=total]').dataset.last) >= 15`)
		uiPoll[bool](t, e, "rates chart", `document.querySelector('svg[data-chart=rates]').dataset.points >= 3 &&
			Number(document.querySelector('svg[data-chart=rates] polyline[data-series=publish]').dataset.last) > 0`)
		pts := uiJS[string](t, e, `document.querySelector('svg[data-chart=rates] polyline[data-series=publish]').getAttribute('points')`)
		if n := len(strings.Fields(pts)); n < 3 {
			t.Errorf("rates chart draws %d points: %q", n, pts)
		}
		e.shot(t, "overview")
	})

	t.Run("Queues", func(t *testing.T) {
		e.open(t, "#/queues", "queues")
		_, all := e.call(t, "GET", "/queues", "")
		n := len(all.([]any))
		rows := `document.querySelectorAll('#queues-table tbody tr[data-name]')`
		uiPoll[bool](t, e, "count", fmt.Sprintf(`document.querySelector('#queues-count').textContent === '%d of %d items'`, n, n))
		// Paging: 20 a page.
		uiJS[any](t, e, `(s => { s.value = '20'; s.dispatchEvent(new Event('change')); })(document.querySelector('#queues-page-size')); null`)
		uiPoll[bool](t, e, "page 1", fmt.Sprintf(`document.querySelector('#queues-page').textContent === 'Page 1 of 2' && %s.length === 20`, rows))
		e.step(t, "next page", chromedp.Click(chromedp.CSS("#queues-next")))
		uiPoll[bool](t, e, "page 2", fmt.Sprintf(`document.querySelector('#queues-page').textContent === 'Page 2 of 2' && %s.length === %d`, rows, n-20))
		// Filtering, by substring and by regular expression.
		e.step(t, "filter", chromedp.SendKeys(chromedp.CSS("#queues-filter"), "ord"))
		uiPoll[bool](t, e, "filtered", fmt.Sprintf(`%s.length === 1 && %s[0].dataset.name === 'orders'`, rows, rows))
		uiJS[any](t, e, `document.querySelector('#queues-filter').value = ''; null`)
		e.step(t, "regex", chromedp.SendKeys(chromedp.CSS("#queues-filter"), "^bulk-0[0-4]$"),
			chromedp.Click(chromedp.CSS("#queues-regex")))
		uiPoll[bool](t, e, "regex filtered", fmt.Sprintf(`%s.length === 5 && [...%s].every(r => /^bulk-0[0-4]$/.test(r.dataset.name))`, rows, rows))
		uiJS[any](t, e, `(f => { f.value = ''; f.dispatchEvent(new Event('input')); })(document.querySelector('#queues-filter')); null`)
		uiPoll[bool](t, e, "unfiltered", fmt.Sprintf(`%s.length === 20`, rows))
		// Sorting by total messages, most first: orders (7).
		e.step(t, "sort", chromedp.Click(chromedp.CSS(`#queues-table th[data-sort="messages"]`)))
		uiPoll[bool](t, e, "sorted", fmt.Sprintf(`%s[0].dataset.name === 'orders' && %s[1].dataset.name === 'jobs'`, rows, rows))
		// Ours: jobs' oldest unacked age and redeliveries in the list.
		cells := uiJS[[]string](t, e, fmt.Sprintf(`[...%s[1].children].map(td => td.textContent)`, rows))
		if len(cells) != 14 || cells[11] == "0" || cells[11] == "" || cells[13] == "" {
			t.Errorf("jobs row: %q (want redelivered and oldest unacked)", cells)
		}
		e.shot(t, "queues")
		// Add a queue with arguments: numbers typed as numbers.
		e.step(t, "add queue", chromedp.SendKeys(chromedp.CSS("#add-queue-name"), "ui-q"),
			chromedp.SendKeys(chromedp.CSS("#add-queue-args"), "x-max-length=10, x-overflow=reject-publish"),
			chromedp.Click(chromedp.CSS("#add-queue button[type=submit]")))
		e.waitAPI(t, "declared", "/queues/%2F/ui-q", func(code int, v any) bool {
			m, _ := v.(map[string]any)
			args, _ := m["arguments"].(map[string]any)
			return code == 200 && m["durable"] == true && args["x-max-length"] == 10.0 && args["x-overflow"] == "reject-publish"
		})
		uiPoll[bool](t, e, "listed", fmt.Sprintf(`document.querySelector('#queues-count').textContent === '%d of %d items'`, n+1, n+1))
	})

	t.Run("Storage", func(t *testing.T) {
		code, st := e.call(t, "GET", "/x-storage", "")
		if code != 200 || uiNum(st, "segments") < 2 {
			t.Fatalf("x-storage: %d %v", code, st)
		}
		e.open(t, "#/storage", "storage")
		uiPoll[bool](t, e, "segments", fmt.Sprintf(`document.querySelector('#st-segments .v').textContent === '%d'`, int(uiNum(st, "segments"))))
		// The purged bulk-00 messages' releases land with their ack
		// records' fsync, so the page may show them for a refresh or two.
		uiPoll[bool](t, e, "pins", `(p => !!p && ['kept on disk by 15 live', 'archive', 'orders', 'jobs'].every(w => p.textContent.includes(w)))(document.querySelector('#oldest-pin'))`)
		uiPoll[bool](t, e, "fsync histogram", `document.querySelectorAll('svg rect').length === 5`)
		e.shot(t, "storage")
	})

	t.Run("QueueJobs", func(t *testing.T) {
		e.open(t, "#/queues/%2F/jobs", "queue")
		uiPoll[bool](t, e, "unacked", `document.querySelector('#q-unacked .v').textContent === '2' && document.querySelector('#q-unacked-age .v').textContent !== '–'`)
		red := uiPoll[string](t, e, "redelivered", `document.querySelector('#q-redelivered .v').textContent`)
		if n, _ := strconv.Atoi(red); n < 1 {
			t.Errorf("redelivered %q", red)
		}
		consumers := uiPoll[string](t, e, "consumers", `document.querySelector('#queue-consumers').textContent`)
		if !strings.Contains(consumers, "Consumers (1)") || !strings.Contains(consumers, "ui-jobs-consumer") && !strings.Contains(consumers, "1 consumer;") {
			t.Errorf("consumers: %q", consumers)
		}
	})

	t.Run("QueueActions", func(t *testing.T) {
		e.open(t, "#/queues/%2F/orders", "queue")
		uiPoll[bool](t, e, "total", `document.querySelector('#q-total .v').textContent === '7'`)
		if title := uiJS[string](t, e, `document.title`); title != "orders · Queues · AMQP-Go" {
			t.Errorf("title %q", title)
		}
		uiPoll[bool](t, e, "queue chart", `(c => c && c.dataset.points >= 2 && Number(c.querySelector('polyline[data-series=ready]').dataset.last) === 7)(document.querySelector('svg[data-chart="queue-counts:%2F/orders"]'))`)
		// The server followed the queue before the page opened: its
		// charts start with the server's samples.
		if n := uiJS[float64](t, e, `Number(document.querySelector('svg[data-chart="queue-counts:%2F/orders"]').dataset.points)`); n != 121 {
			t.Errorf("queue chart has %v points, want the server's 121", n)
		}
		// Peek at two messages; they stay in the queue.
		e.step(t, "get", chromedp.SetValue(chromedp.CSS("#get-count"), "2"), chromedp.Click(chromedp.CSS("#get-submit")))
		uiPoll[bool](t, e, "peeked", `(p => p.length === 2 && p[0].textContent === 'order-1' && p[1].textContent === 'order-2')(document.querySelectorAll('#queue-messages pre.payload'))`)
		e.waitAPI(t, "requeued", "/queues/%2F/orders", func(_ int, v any) bool {
			return uiNum(v, "messages_ready") == 7 && uiNum(v, "messages_unacknowledged") == 0
		})
		e.shot(t, "queue")
		// Publish one through the default exchange.
		e.step(t, "publish", chromedp.SendKeys(chromedp.CSS("#publish-payload"), "from-ui"), chromedp.Click(chromedp.CSS("#publish-submit")))
		e.waitAPI(t, "published", "/queues/%2F/orders", func(_ int, v any) bool { return uiNum(v, "messages") == 8 })
		_, got := e.call(t, "POST", "/queues/%2F/orders/get", `{"count":8,"ackmode":"ack_requeue_true","encoding":"auto"}`)
		if l, _ := got.([]any); len(l) != 8 || l[7].(map[string]any)["payload"] != "from-ui" {
			t.Errorf("after publish, the queue holds %v", got)
		}
		// Purge: two clicks (the button asks first).
		e.step(t, "purge", chromedp.Click(chromedp.CSS("#purge")))
		if e.within(3*time.Second, `document.querySelector('#purge').classList.contains('armed')`) {
			if _, v := e.call(t, "GET", "/queues/%2F/orders", ""); uiNum(v, "messages") != 8 {
				t.Fatalf("one click purged: %v", v)
			}
		}
		e.confirm(t, "purge", "#purge")
		e.waitAPI(t, "purged", "/queues/%2F/orders", func(_ int, v any) bool { return uiNum(v, "messages") == 0 })
		uiPoll[bool](t, e, "shows 0", `document.querySelector('#q-total .v').textContent === '0'`)
		// Delete.
		e.confirm(t, "delete", "#delete-queue")
		e.waitAPI(t, "deleted", "/queues/%2F/orders", func(code int, _ any) bool { return code == 404 })
		uiPoll[bool](t, e, "back to the list", `location.hash === '#/queues' && !!document.querySelector('#main .page[data-page=queues]')`)
	})

	t.Run("Connections", func(t *testing.T) {
		victim := uiDial(t, a.amqp, "ui-victim")
		closed := victim.NotifyClose(make(chan *amqp.Error, 1))
		var name string
		e.waitAPI(t, "victim listed", "/connections", func(_ int, v any) bool {
			for _, c := range v.([]any) {
				m := c.(map[string]any)
				if cp, _ := m["client_properties"].(map[string]any); cp["connection_name"] == "ui-victim" {
					name, _ = m["name"].(string)
				}
			}
			return name != ""
		})
		uiJS[any](t, e, `sessionStorage.setItem('amqp-go.refresh', '0'); null`) // rows stay put for the clicks
		defer uiJS[any](t, e, `sessionStorage.setItem('amqp-go.refresh', '300'); null`)
		e.open(t, "#/connections", "connections")
		row := fmt.Sprintf(`#connections-table tr[data-name=%q]`, name)
		uiPoll[bool](t, e, "three listed", `document.querySelector('#connections-count').textContent === '3 of 3 items'`)
		if txt := uiJS[string](t, e, fmt.Sprintf(`document.querySelector(%q).textContent`, row)); !strings.Contains(txt, "ui-victim") || !strings.Contains(txt, "guest") {
			t.Errorf("victim's row: %q", txt)
		}
		e.shot(t, "connections")
		// The consumer's page: its two channels, one with the jobs consumer
		// (prefetch 2, 2 unacked).
		var consumerName string
		for _, c := range e.list(t, "/connections") {
			if cp, _ := c["client_properties"].(map[string]any); cp["connection_name"] == "ui-consumer" {
				consumerName, _ = c["name"].(string)
			}
		}
		e.step(t, "open consumer", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#connections-table tr[data-name=%q] a`, consumerName))))
		uiPoll[bool](t, e, "connection page", `!!document.querySelector('#main .page[data-page=connection]')`)
		uiPoll[bool](t, e, "channels", `document.querySelector('#connection-channels h2').textContent === 'Channels (2)'`)
		cells := uiJS[[]string](t, e, `[...document.querySelectorAll('#connection-channels tr[data-number="1"] td')].map(td => td.textContent)`)
		if len(cells) != 7 || cells[2] != "1" || cells[3] != "2" || cells[4] != "2" {
			t.Errorf("ui-consumer's channel 1: %q (want 1 consumer, prefetch 2, 2 unacked)", cells)
		}
		if d := uiJS[string](t, e, `document.querySelector('#connection-details').textContent`); !strings.Contains(d, "ui-consumer") || !strings.Contains(d, "PLAIN") {
			t.Errorf("ui-consumer's details: %q", d)
		}
		e.shot(t, "connection")
		e.open(t, "#/connections", "connections")
		uiPoll[bool](t, e, "three listed again", `document.querySelector('#connections-count').textContent === '3 of 3 items'`)
		e.confirm(t, "close", row+" button.close-connection")
		select {
		case err := <-closed:
			if err == nil || err.Code != 320 || err.Reason != "CONNECTION_FORCED - Closed via management UI" {
				t.Errorf("victim closed with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the connection was not closed")
		}
		uiPoll[bool](t, e, "gone from the list", `document.querySelector('#connections-count').textContent === '2 of 2 items'`)
	})

	t.Run("Exchanges", func(t *testing.T) {
		e.open(t, "#/exchanges", "exchanges")
		uiPoll[bool](t, e, "listed", `!!document.querySelector('#exchanges-table tr[data-name="amq.topic"]')`)
		e.step(t, "add", chromedp.SendKeys(chromedp.CSS("#add-exchange-name"), "ui-x"), chromedp.SetValue(chromedp.CSS("#add-exchange-type"), "fanout"),
			chromedp.Click(chromedp.CSS("#add-exchange button[type=submit]")))
		e.waitAPI(t, "declared", "/exchanges/%2F/ui-x", func(code int, v any) bool {
			m, _ := v.(map[string]any)
			return code == 200 && m["type"] == "fanout"
		})
		uiPoll[bool](t, e, "shown", `!!document.querySelector('#exchanges-table tr[data-name="ui-x"]')`)
		e.shot(t, "exchanges")
		// Its page: bind it to bulk-02, publish through it, delete it.
		// Found and clicked in one evaluation: the list re-renders on
		// its refresh, and a node found before it is gone after.
		uiPoll[bool](t, e, "open", `(() => { const a = document.querySelector('#exchanges-table tr[data-name="ui-x"] a'); if (!a) return false; a.click(); return true; })()`)
		uiPoll[bool](t, e, "exchange page", `location.hash === '#/exchanges/%2F/ui-x' && !!document.querySelector('#main .page[data-page=exchange]')`)
		e.step(t, "bind", chromedp.SendKeys(chromedp.CSS("#xbind-destination"), "bulk-02"), chromedp.Click(chromedp.CSS("#xbind-form button[type=submit]")))
		e.waitAPI(t, "bound", "/exchanges/%2F/ui-x/bindings/source", func(_ int, v any) bool {
			l, _ := v.([]any)
			return len(l) == 1 && l[0].(map[string]any)["destination"] == "bulk-02"
		})
		uiPoll[bool](t, e, "binding shown", `document.querySelector('#exchange-bindings-source').textContent.includes('bulk-02')`)
		e.step(t, "publish", chromedp.SendKeys(chromedp.CSS("#xpublish-payload"), "via-ui-x"), chromedp.Click(chromedp.CSS("#xpublish-submit")))
		uiPoll[bool](t, e, "routed", `document.querySelector('#xpublish-result').textContent === 'routed'`)
		e.shot(t, "exchange")
		_, got := e.call(t, "POST", "/queues/%2F/bulk-02/get", `{"count":5,"ackmode":"ack_requeue_false","encoding":"auto"}`)
		if l, _ := got.([]any); len(l) != 1 || l[0].(map[string]any)["payload"] != "via-ui-x" || l[0].(map[string]any)["exchange"] != "ui-x" {
			t.Errorf("bulk-02 holds %v", got)
		}
		e.confirm(t, "delete", "#delete-exchange")
		e.waitAPI(t, "deleted", "/exchanges/%2F/ui-x", func(code int, _ any) bool { return code == 404 })
		uiPoll[bool](t, e, "back to the list", `location.hash === '#/exchanges'`)
	})

	t.Run("Channels", func(t *testing.T) {
		e.open(t, "#/channels", "channels")
		if code, v := e.call(t, "GET", "/channels", ""); code == 404 {
			uiPoll[bool](t, e, "notice", `!!document.querySelector('#channels-missing')`)
		} else {
			n := len(v.([]any))
			uiPoll[bool](t, e, "listed", fmt.Sprintf(`document.querySelector('#channels-count').textContent === '%d of %d items'`, n, n))
			e.shot(t, "channels")
		}
		// channelOf is the name of channel number of the connection
		// whose client calls itself client.
		channelOf := func(client string, number int) string {
			var conn string
			for _, c := range e.list(t, "/connections") {
				if cp, _ := c["client_properties"].(map[string]any); cp["connection_name"] == client {
					conn, _ = c["name"].(string)
				}
			}
			for _, c := range e.list(t, "/channels") {
				if cd, _ := c["connection_details"].(map[string]any); cd["name"] == conn && c["number"] == float64(number) {
					return c["name"].(string)
				}
			}
			t.Fatalf("no channel %d of %s", number, client)
			return ""
		}
		// The jobs consumer's channel, from the list: its consumer, and
		// the jobs deliveries (job-1, job-2 and job-1 redelivered), 2 unacked.
		jobsChan := channelOf("ui-consumer", 1)
		e.step(t, "open channel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#channels-table tr[data-name=%q] td:first-child a`, jobsChan))))
		uiPoll[bool](t, e, "channel page", `!!document.querySelector('#main .page[data-page=channel]')`)
		uiPoll[bool](t, e, "consumer", `!!document.querySelector('#channel-consumers-table tr[data-tag="ui-jobs-consumer"]')`)
		cells := uiPoll[[]string](t, e, "jobs deliveries", `(c => c.length === 8 && c)([...document.querySelectorAll('#channel-deliveries-table tr[data-name="jobs"] td')].map(td => td.textContent))`)
		if !strings.HasPrefix(cells[1], "3 · ") || !strings.HasPrefix(cells[6], "1 · ") || !strings.HasPrefix(cells[7], "0 · ") {
			t.Errorf("jobs deliveries: %q (want 3 delivered, 1 redelivered, 0 acked)", cells)
		}
		if d := uiJS[string](t, e, `document.querySelector('#channel-details').textContent`); !strings.Contains(d, "Unacked / unconfirmed2 / 0") {
			t.Errorf("jobs channel details: %q", d)
		}
		if txt := uiJS[string](t, e, `document.querySelector('#channel-publishes').textContent`); !strings.Contains(txt, "Nothing published.") {
			t.Errorf("jobs channel publishes: %q", txt)
		}
		e.shot(t, "channel")
		// The steady publisher's channel: the default exchange, at a rate.
		e.open(t, "#/channels/"+urlPathEscape(channelOf("ui-publisher", 2)), "channel")
		uiPoll[bool](t, e, "publish rate", `(c => c && /^[\d,]+ · [\d.]+\/s$/.test(c.textContent) && !c.textContent.endsWith(' 0.0/s'))(document.querySelectorAll('#channel-publishes-table tr[data-name=""] td')[1])`)
		if txt := uiJS[string](t, e, `document.querySelector('#channel-publishes-table tr[data-name=""] td').textContent`); txt != "(AMQP default)" {
			t.Errorf("publisher's exchange: %q", txt)
		}
	})

	t.Run("UsersAndVhosts", func(t *testing.T) {
		e.open(t, "#/users", "users")
		uiPoll[bool](t, e, "guest", `!!document.querySelector('#users-list tr[data-name="guest"]')`)
		e.step(t, "add user", chromedp.SendKeys(chromedp.CSS("#add-user-name"), "ui-user"), chromedp.SendKeys(chromedp.CSS("#add-user-password"), "s3cret"),
			chromedp.SendKeys(chromedp.CSS("#add-user-tags"), "monitoring"), chromedp.Click(chromedp.CSS("#add-user button[type=submit]")))
		e.waitAPI(t, "user", "/users/ui-user", func(code int, v any) bool {
			m, _ := v.(map[string]any)
			tags, _ := m["tags"].([]any)
			return code == 200 && len(tags) == 1 && tags[0] == "monitoring"
		})
		e.step(t, "set permission", chromedp.SendKeys(chromedp.CSS("#set-perm-user"), "ui-user"), chromedp.SetValue(chromedp.CSS("#set-perm-write"), "^ui-"),
			chromedp.Click(chromedp.CSS("#set-permission button[type=submit]")))
		e.waitAPI(t, "permission", "/permissions/%2F/ui-user", func(code int, v any) bool {
			m, _ := v.(map[string]any)
			return code == 200 && m["write"] == "^ui-" && m["read"] == ".*"
		})
		uiPoll[bool](t, e, "shown", `document.querySelector('#users-list tr[data-name="ui-user"]').textContent.includes('monitoring')`)
		e.step(t, "set topic permission", chromedp.SendKeys(chromedp.CSS("#set-topic-user"), "ui-user"), chromedp.SetValue(chromedp.CSS("#set-topic-write"), `^ui\.`),
			chromedp.Click(chromedp.CSS("#set-topic-permission button[type=submit]")))
		e.waitAPI(t, "topic permission", "/topic-permissions/%2F/ui-user", func(code int, v any) bool {
			l, _ := v.([]any)
			if code != 200 || len(l) != 1 {
				return false
			}
			m := l[0].(map[string]any)
			return m["exchange"] == "amq.topic" && m["write"] == `^ui\.` && m["read"] == ".*"
		})
		uiPoll[bool](t, e, "topic permission shown", `document.querySelector('#topic-permissions-list').textContent.includes('^ui\\.')`)
		// User limits: set, shown, cleared; one left for the screenshot.
		limits := func(want map[string]float64) func(int, any) bool {
			return func(code int, v any) bool {
				l, _ := v.([]any)
				if code != 200 || len(l) != min(len(want), 1) {
					return false
				}
				for k, n := range want {
					if uiNum(l[0].(map[string]any)["value"], k) != n {
						return false
					}
				}
				return true
			}
		}
		limitCell := `document.querySelector('#users-list tr[data-name="ui-user"] td.limits').textContent`
		setLimit := func(kind, value string) {
			e.step(t, "set "+kind, chromedp.SetValue(chromedp.CSS("#set-user-limit-user"), "ui-user"), chromedp.SetValue(chromedp.CSS("#set-user-limit-name"), kind),
				chromedp.SetValue(chromedp.CSS("#set-user-limit-value"), value), chromedp.Click(chromedp.CSS("#set-user-limit button[type=submit]")))
		}
		setLimit("max-connections", "3")
		e.waitAPI(t, "user limit", "/user-limits/ui-user", limits(map[string]float64{"max-connections": 3}))
		uiPoll[bool](t, e, "user limit shown", limitCell+` === 'max-connections=3'`)
		e.step(t, "clear user limit", chromedp.Click(chromedp.CSS("#clear-user-limit")))
		e.waitAPI(t, "user limit cleared", "/user-limits/ui-user", limits(nil))
		uiPoll[bool](t, e, "user limit gone", limitCell+` === ''`)
		setLimit("max-channels", "20")
		e.waitAPI(t, "channel limit", "/user-limits/ui-user", limits(map[string]float64{"max-channels": 20}))
		uiPoll[bool](t, e, "channel limit shown", limitCell+` === 'max-channels=20'`)
		e.shot(t, "users")
		e.open(t, "#/vhosts", "vhosts")
		uiPoll[bool](t, e, "default vhost", `!!document.querySelector('#vhosts-list tr[data-name="/"]')`)
		e.step(t, "add vhost", chromedp.SendKeys(chromedp.CSS("#add-vhost-name"), "ui-vhost"), chromedp.Click(chromedp.CSS("#add-vhost button[type=submit]")))
		e.waitAPI(t, "vhost", "/vhosts/ui-vhost", func(code int, _ any) bool { return code == 200 })
		uiPoll[bool](t, e, "vhost shown", `!!document.querySelector('#vhosts-list tr[data-name="ui-vhost"]')`)
		uiPoll[bool](t, e, "vhost in the limit form", `[...document.querySelectorAll('#set-limit-vhost option')].some(o => o.value === 'ui-vhost')`)
		e.step(t, "set limit", chromedp.SetValue(chromedp.CSS("#set-limit-vhost"), "ui-vhost"), chromedp.SetValue(chromedp.CSS("#set-limit-name"), "max-queues"),
			chromedp.SendKeys(chromedp.CSS("#set-limit-value"), "5"), chromedp.Click(chromedp.CSS("#set-limit button[type=submit]")))
		e.waitAPI(t, "limit", "/vhost-limits/ui-vhost", func(code int, v any) bool {
			l, _ := v.([]any)
			return code == 200 && len(l) == 1 && uiNum(l[0].(map[string]any)["value"], "max-queues") == 5
		})
		uiPoll[bool](t, e, "limit shown", `document.querySelector('#vhosts-list tr[data-name="ui-vhost"]').textContent.includes('max-queues=5')`)
	})

	t.Run("Policies", func(t *testing.T) {
		e.open(t, "#/policies", "policies")
		if code, _ := e.call(t, "GET", "/policies", ""); code == 404 {
			uiPoll[bool](t, e, "notice", `document.querySelector('#policies-list').textContent.includes('does not serve /api/policies')`)
			return
		}
		uiPoll[bool](t, e, "vhosts loaded", `!!document.querySelector('#add-policy select')`)
		e.step(t, "add policy", chromedp.SendKeys(chromedp.CSS("#add-policy-name"), "ui-ttl"), chromedp.SetValue(chromedp.CSS("#add-policy-pattern"), "^bulk-"),
			chromedp.SendKeys(chromedp.CSS("#add-policy-definition"), `{"message-ttl": 60000}`), chromedp.Click(chromedp.CSS("#add-policy button[type=submit]")))
		e.waitAPI(t, "policy", "/policies/%2F/ui-ttl", func(code int, v any) bool {
			m, _ := v.(map[string]any)
			return code == 200 && m["pattern"] == "^bulk-" && uiNum(m["definition"], "message-ttl") == 60000
		})
		uiPoll[bool](t, e, "shown", `!!document.querySelector('#policies-list tr[data-name="ui-ttl"]')`)
		e.shot(t, "policies")
	})

	t.Run("Definitions", func(t *testing.T) {
		e.open(t, "#/definitions", "definitions")
		e.step(t, "export", chromedp.Click(chromedp.CSS("#export")))
		exported := uiPoll[string](t, e, "exported", `document.querySelector('#export-json').value`)
		var d struct{ Queues []struct{ Name string } }
		if err := json.Unmarshal([]byte(exported), &d); err != nil {
			t.Fatalf("exported: %v", err)
		}
		found := false
		for _, q := range d.Queues {
			found = found || q.Name == "archive"
		}
		if !found {
			t.Errorf("export lacks queue archive: %.300s", exported)
		}
		imp := `{"queues":[{"name":"imported-q","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}`
		e.step(t, "import", chromedp.SetValue(chromedp.CSS("#import-json"), imp), chromedp.Click(chromedp.CSS("#import")))
		e.waitAPI(t, "imported", "/queues/%2F/imported-q", func(code int, _ any) bool { return code == 200 })
	})

	t.Run("LogOutAndMonitoring", func(t *testing.T) {
		// Log out, then in as ui-user (monitoring, made above): the menu
		// leaves out what needs an administrator.
		e.step(t, "log out", chromedp.Click(chromedp.CSS("#logout")))
		uiPoll[bool](t, e, "login form", `!document.querySelector('#login').hidden && document.querySelector('#top').hidden && !sessionStorage.getItem('amqp-go.auth')`)
		uiJS[any](t, e, `document.querySelector('#login-user').value = ''; document.querySelector('#login-pass').value = ''; null`)
		e.step(t, "log in", chromedp.SendKeys(chromedp.CSS("#login-user"), "ui-user"), chromedp.SendKeys(chromedp.CSS("#login-pass"), "s3cret"),
			chromedp.Click(chromedp.CSS("#login-submit")))
		uiPoll[bool](t, e, "logged in", `document.querySelector('#whoami').textContent === 'ui-user'`)
		menu := uiPoll[[]string](t, e, "menu", `(l => l.includes('Queues') && l)([...document.querySelectorAll('#nav a:not([hidden])')].map(a => a.textContent))`)
		if got := strings.Join(menu, ","); got != "Overview,Connections,Channels,Exchanges,Queues,Log & storage,Virtual hosts,Policies" {
			t.Errorf("monitoring's menu: %s", got)
		}
		e.open(t, "#/storage", "storage")
		uiPoll[bool](t, e, "storage for monitoring", `!!document.querySelector('#st-segments')`)
	})
}
