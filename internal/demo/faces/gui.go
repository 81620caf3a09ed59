package faces

import (
	"embed"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed assets/index.html assets/faces.css assets/faces.js assets/*.svg
var embedded embed.FS

// guiAssets is what the gui serves: the page template and static files,
// read from DATA_PATH first (so upstream-style overrides work) and from the
// copy built into the binary otherwise.
type guiAssets struct {
	dirs []fs.FS
	page string // index.html, placeholders not yet substituted
}

func loadGUIAssets(dataPath string) (*guiAssets, error) {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		return nil, fmt.Errorf("faces: embedded assets: %w", err)
	}
	g := &guiAssets{dirs: []fs.FS{sub}}
	if dataPath != "" {
		if st, err := os.Stat(dataPath); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("faces: DATA_PATH %q is not a readable directory: unset it to use the built-in page", dataPath)
		}
		g.dirs = append([]fs.FS{os.DirFS(dataPath)}, g.dirs...)
	}
	page, err := g.read("index.html")
	if err != nil {
		return nil, fmt.Errorf("faces: gui page: %w", err)
	}
	g.page = string(page)
	return g, nil
}

func (g *guiAssets) read(name string) ([]byte, error) {
	var first error
	for _, d := range g.dirs {
		b, err := fs.ReadFile(d, name)
		if err == nil {
			return b, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// staticTypes are the files the gui serves besides the page. Upstream
// serves *.svg; the built-in page also has its stylesheet and script.
var staticTypes = map[string]bool{".svg": true, ".css": true, ".js": true}

func (s *Server) serveGUI(w http.ResponseWriter, r *http.Request, start time.Time) {
	h := w.Header()
	h.Set("X-Faces-User-Agent", r.UserAgent())
	latency := func() { h.Set("X-Faces-Latency", strconv.FormatInt(s.now().Sub(start).Milliseconds(), 10)) }
	p := r.URL.Path
	switch {
	case p == "/" || p == "/index.html":
		body := s.renderPage(r)
		latency()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		io.WriteString(w, body)
	case strings.HasPrefix(p, "/face/"):
		s.proxyFace(w, r, strings.TrimPrefix(p, "/face/"), latency)
	case staticTypes[path.Ext(p)] && fs.ValidPath(strings.TrimPrefix(p, "/")):
		b, err := s.gui.read(strings.TrimPrefix(p, "/"))
		latency()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("reading asset", "path", p, "err", err)
			}
			writeText(w, http.StatusNotFound, p+" not found")
			return
		}
		h.Set("Content-Type", mime.TypeByExtension(path.Ext(p)))
		w.Write(b)
	default:
		latency()
		writeText(w, http.StatusNotFound, p+" not found")
	}
}

// renderPage substitutes the page's %%{...} placeholders. Every value is
// HTML-escaped: the user name and agent come from the request, and the
// built-in page only uses them inside attributes and text.
func (s *Server) renderPage(r *http.Request) string {
	user := r.Header.Get(s.cfg.UserHeader)
	if user == "" {
		user = "unknown"
	}
	return strings.NewReplacer(
		"%%{color}", html.EscapeString(s.cfg.PageColor),
		"%%{hide_key}", strconv.FormatBool(s.cfg.HideKey),
		"%%{show_pods}", strconv.FormatBool(s.cfg.ShowPods),
		"%%{user}", html.EscapeString(user),
		"%%{user_header}", html.EscapeString(s.cfg.UserHeader),
		"%%{user_agent}", html.EscapeString(r.UserAgent()),
	).Replace(s.gui.page)
}

// proxyFace forwards /face/<rest> to http://face/<rest>. As upstream, the
// query and the request's headers stay behind; status, body, Content-Type
// and face's X-Faces-Pod come back.
func (s *Server) proxyFace(w http.ResponseWriter, r *http.Request, rest string, latency func()) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+s.cfg.FaceService+"/"+rest, nil)
	if err != nil {
		latency()
		writeText(w, http.StatusBadGateway, fmt.Sprintf("faces: bad face URL for %q: %v", rest, err))
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		latency()
		writeText(w, http.StatusBadGateway, fmt.Sprintf("faces: couldn't reach face at %s: %v", s.cfg.FaceService, err))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	latency()
	if err != nil {
		writeText(w, http.StatusBadGateway, fmt.Sprintf("faces: reading face's reply: %v", err))
		return
	}
	h := w.Header()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		h.Set("Content-Type", ct)
	}
	if pod := resp.Header.Get("X-Faces-Pod"); pod != "" {
		h.Set("X-Faces-Pod", pod)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}
