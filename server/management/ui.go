package management

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The web UI: plain HTML, CSS and ES modules under ui/, embedded in the
// binary and served at / by the API's listener (the API stays under
// /api/). Nothing is loaded from elsewhere; the browser talks to /api with
// the HTTP basic credentials its login form keeps in sessionStorage, so
// serving the files needs no auth. See README's "Web UI".

//go:embed ui
var uiEmbed embed.FS

var uiFiles = func() http.Handler {
	sub, err := fs.Sub(uiEmbed, "ui")
	if err != nil {
		panic(err)
	}
	return http.FileServer(http.FS(sub))
}()

// isUIPath reports whether p (the request's path) is the UI's rather than
// the API's.
func isUIPath(p string) bool {
	return p != "/api" && !strings.HasPrefix(p, "/api/")
}

// serveUI answers GET and HEAD for the UI's files (index.html at /).
func serveUI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "HEAD, GET")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
		http.NotFound(w, r) // no directory listings
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; frame-ancestors 'none'")
	uiFiles.ServeHTTP(w, r)
}
