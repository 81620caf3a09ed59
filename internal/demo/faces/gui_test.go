package faces

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestGUIPage(t *testing.T) {
	gui := newServer(t, Config{Role: RoleGUI, PageColor: "black", HideKey: true, ShowPods: false, UserHeader: "X-Who", FaceService: deadAddr(t)}, Options{})
	base := "http://" + serve(t, gui)
	tests := []struct {
		name string
		hdr  map[string]string
		want []string
		not  []string
	}{
		{
			name: "known user",
			hdr:  map[string]string{"X-Who": "alice", "User-Agent": "agent/9"},
			want: []string{`data-color="black"`, `data-hide-key="true"`, `data-show-pods="false"`, `data-user="alice"`,
				`data-user-header="X-Who"`, `data-user-agent="agent/9"`, `<span id="username">alice</span>`, "<h1>Faces</h1>"},
		},
		{
			name: "unknown user",
			hdr:  map[string]string{"User-Agent": "agent/9"},
			want: []string{`data-user="unknown"`},
		},
		{
			name: "values are escaped",
			hdr:  map[string]string{"X-Who": `"><script>alert(1)</script>`, "User-Agent": "a<b"},
			want: []string{`data-user="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`, `data-user-agent="a&lt;b"`},
			not:  []string{"<script>alert(1)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/", "/index.html"} {
				r := get(t, http.DefaultClient, "GET", base+path, tt.hdr)
				if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Fatalf("GET %s = %d %q", path, r.status, r.header.Get("Content-Type"))
				}
				for _, w := range tt.want {
					if !strings.Contains(r.body, w) {
						t.Errorf("GET %s: page lacks %q", path, w)
					}
				}
				for _, n := range append(tt.not, "%%{") {
					if strings.Contains(r.body, n) {
						t.Errorf("GET %s: page contains %q", path, n)
					}
				}
				if _, err := strconv.Atoi(r.header.Get("X-Faces-Latency")); err != nil {
					t.Errorf("X-Faces-Latency = %q", r.header.Get("X-Faces-Latency"))
				}
				if r.header.Get("X-Faces-User-Agent") != tt.hdr["User-Agent"] {
					t.Errorf("X-Faces-User-Agent = %q, want %q", r.header.Get("X-Faces-User-Agent"), tt.hdr["User-Agent"])
				}
			}
		})
	}
}

func TestGUIAssets(t *testing.T) {
	gui := newServer(t, Config{Role: RoleGUI, PageColor: "white", FaceService: deadAddr(t)}, Options{})
	base := "http://" + serve(t, gui)
	tests := []struct {
		path       string
		wantStatus int
		wantType   string
		wantBody   string
	}{
		{"/logo.svg", 200, "image/svg+xml", "<svg"},
		{"/faces.js", 200, "text/javascript", "../face/center/"},
		{"/faces.css", 200, "text/css", ".cell"},
		{"/nope.svg", 404, "text/plain", "/nope.svg not found"},
		{"/elsewhere", 404, "text/plain", "/elsewhere not found"},
		{"/manifests.yaml", 404, "text/plain", "/manifests.yaml not found"},
		{"/face/center/", 502, "text/plain", "couldn't reach face"},
	}
	for _, tt := range tests {
		r := get(t, http.DefaultClient, "GET", base+tt.path, nil)
		if r.status != tt.wantStatus || !strings.HasPrefix(r.header.Get("Content-Type"), tt.wantType) || !strings.Contains(r.body, tt.wantBody) {
			t.Errorf("GET %s = %d %q %.60q; want %d %q containing %q", tt.path, r.status, r.header.Get("Content-Type"), r.body, tt.wantStatus, tt.wantType, tt.wantBody)
		}
		if r.header.Get("X-Faces-Latency") == "" {
			t.Errorf("GET %s: no X-Faces-Latency", tt.path)
		}
	}
}

func TestGUIDataPath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>%%{user} on %%{color}</p>"), 0o644)
	os.WriteFile(filepath.Join(dir, "extra.svg"), []byte("<svg id=extra/>"), 0o644)
	gui := newServer(t, Config{Role: RoleGUI, PageColor: "red", DataPath: dir, UserHeader: "X-Faces-User"}, Options{})
	base := "http://" + serve(t, gui)
	if r := get(t, http.DefaultClient, "GET", base+"/", map[string]string{"X-Faces-User": "zed"}); r.body != "<p>zed on red</p>" {
		t.Errorf("page from DATA_PATH = %q", r.body)
	}
	if r := get(t, http.DefaultClient, "GET", base+"/extra.svg", nil); r.body != "<svg id=extra/>" {
		t.Errorf("svg from DATA_PATH = %q", r.body)
	}
	if r := get(t, http.DefaultClient, "GET", base+"/logo.svg", nil); r.status != 200 {
		t.Errorf("built-in svg behind DATA_PATH = %d", r.status)
	}
}

func TestGUIProxiesFace(t *testing.T) {
	fb := &fixedBackend{status: 200, body: `{"smiley":"&#x1F603;","color":"#66CCEE","errors":[]}`}
	faceAddr := backendAddr(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Faces-Pod", "face-6f9-abc")
		if r.URL.Path == "/edge/" {
			w.WriteHeader(599)
			w.Write([]byte("Latched into error state"))
			return
		}
		fb.ServeHTTP(w, r)
	}))
	gui := newServer(t, Config{Role: RoleGUI, PageColor: "white", FaceService: faceAddr, Pod: "faces-gui-1-x", UserHeader: "X-Faces-User"}, Options{})
	base := "http://" + serve(t, gui)

	r := get(t, http.DefaultClient, "GET", base+"/face/center/?row=1&col=2&now=2026", map[string]string{"X-Faces-User": "ann", "X-Custom-Header": "custom"})
	if r.status != 200 || r.body != fb.body || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Faces-Pod") != "face-6f9-abc" {
		t.Errorf("proxied reply = %d %q %v", r.status, r.body, r.header)
	}
	if r.header.Get("X-Faces-User") != "ann" || r.header.Get("X-Faces-Latency") == "" {
		t.Errorf("gui reply headers %v", r.header)
	}
	seen := fb.last()
	if seen.URL.Path != "/center/" || seen.URL.RawQuery != "" || seen.Header.Get("X-Faces-User") != "" || seen.Header.Get("X-Custom-Header") != "" {
		t.Errorf("face saw %s?%s with headers %v; want /center/, no query, no forwarded headers", seen.URL.Path, seen.URL.RawQuery, seen.Header)
	}
	r = get(t, http.DefaultClient, "GET", base+"/face/edge/", nil)
	if r.status != 599 || r.body != "Latched into error state" || r.header.Get("X-Faces-Pod") != "face-6f9-abc" {
		t.Errorf("proxied 599 = %d %q %v", r.status, r.body, r.header)
	}
}
