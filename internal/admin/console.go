package admin

import (
	"embed"
	"net/http"
	"path"
)

// consoleFS holds the console: plain HTML, CSS and JavaScript, no build
// step. It is read-only: embed.FS cannot change.
//
//go:embed console
var consoleFS embed.FS

// consoleIndex serves the console's page. The page holds no data; the
// script asks the API with the token the operator enters.
func (s *Server) consoleIndex(w http.ResponseWriter, r *http.Request) {
	s.serveAsset(w, r, "index.html")
}

// consoleAsset serves the console's script and style sheet.
func (s *Server) consoleAsset(w http.ResponseWriter, r *http.Request) {
	s.serveAsset(w, r, r.PathValue("file"))
}

func (s *Server) serveAsset(w http.ResponseWriter, _ *http.Request, name string) {
	if name != path.Base(name) {
		http.NotFound(w, nil)
		return
	}
	b, err := consoleFS.ReadFile("console/" + name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no console file "+name)
		return
	}
	ct := "application/octet-stream"
	switch path.Ext(name) {
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
