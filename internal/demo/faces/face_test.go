package faces

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// faceReply is the part of face's JSON the tests look at.
type faceReply struct {
	Smiley  string   `json:"smiley"`
	Color   string   `json:"color"`
	Rate    string   `json:"rate"`
	Errors  []string `json:"errors"`
	Latency *int64   `json:"latency"`
	Path    string   `json:"path"`
}

func decodeFace(t *testing.T, r reply) faceReply {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("face status %d (%s), want 200", r.status, r.body)
	}
	var f faceReply
	if err := json.Unmarshal([]byte(r.body), &f); err != nil {
		t.Fatalf("face body %q: %v", r.body, err)
	}
	if f.Latency == nil {
		t.Errorf("face reply %s has no latency", r.body)
	}
	return f
}

// fixedBackend answers every request with status and body, recording the
// requests it saw.
type fixedBackend struct {
	status int
	body   string
	mu     sync.Mutex
	seen   []*http.Request
}

func (b *fixedBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r)
	b.mu.Unlock()
	w.WriteHeader(b.status)
	w.Write([]byte(b.body))
}

func (b *fixedBackend) last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return nil
	}
	return b.seen[len(b.seen)-1]
}

func backendAddr(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFaceMapping(t *testing.T) {
	// Real smiley and color servers for the happy path.
	smiley := newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["HeartEyes"]}, Options{})
	color := newServer(t, Config{Role: RoleColor, Color: Colors["green"]}, Options{})
	realSmiley, realColor := serve(t, smiley), serve(t, color)

	status := func(code int, body string) string { return backendAddr(t, &fixedBackend{status: code, body: body}) }
	tests := []struct {
		name          string
		smiley, color string
		want          faceReply
		wantErrPrefix []string
	}{
		{
			name: "both fine", smiley: realSmiley, color: realColor,
			want: faceReply{Smiley: "&#x1F60D;", Color: "#228833", Errors: []string{}},
		},
		{
			name: "504s are sleeping and red", smiley: status(504, "upstream request timeout"), color: status(504, ""),
			want:          faceReply{Smiley: "&#x1F634;", Color: "#EE6677"},
			wantErrPrefix: []string{"smiley: error from ", "color: error from "},
		},
		{
			name: "500s are cursing and grey", smiley: status(500, "Error fraction triggered"), color: status(500, "Error fraction triggered"),
			want:          faceReply{Smiley: "&#x1F92C;", Color: "#BBBBBB"},
			wantErrPrefix: []string{"smiley: error from ", "color: error from "},
		},
		{
			name: "429 and 599 are failures like 500", smiley: status(429, `{"smiley":"&#x1F92F;"}`), color: status(599, "Latched into error state"),
			want:          faceReply{Smiley: "&#x1F92C;", Color: "#BBBBBB"},
			wantErrPrefix: []string{"smiley: error from ", "color: error from "},
		},
		{
			name: "transport errors", smiley: deadAddr(t), color: deadAddr(t),
			want:          faceReply{Smiley: "&#x1F92C;", Color: "#BBBBBB"},
			wantErrPrefix: []string{"smiley: couldn't make request to ", "color: couldn't make request to "},
		},
		{
			name: "smiley fails, color fine", smiley: status(503, ""), color: realColor,
			want:          faceReply{Smiley: "&#x1F92C;", Color: "#228833"},
			wantErrPrefix: []string{"smiley: error from "},
		},
		{
			name: "unparseable 200", smiley: status(200, "not json"), color: status(200, `{"nocolor":1}`),
			want:          faceReply{Smiley: "&#x1F92C;", Color: "#BBBBBB"},
			wantErrPrefix: []string{"smiley: couldn't decode response from ", "color: no color in response from "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			face := newServer(t, Config{Role: RoleFace, SmileyService: tt.smiley, ColorService: tt.color}, Options{})
			got := decodeFace(t, get(t, http.DefaultClient, "GET", "http://"+serve(t, face)+"/edge/?row=0&col=3", nil))
			if got.Smiley != tt.want.Smiley || got.Color != tt.want.Color {
				t.Errorf("smiley, color = %q, %q; want %q, %q", got.Smiley, got.Color, tt.want.Smiley, tt.want.Color)
			}
			if got.Rate != "0.0 RPS" || got.Path != "/edge/" {
				t.Errorf("rate %q path %q", got.Rate, got.Path)
			}
			if len(got.Errors) != len(tt.wantErrPrefix) {
				t.Fatalf("errors = %q, want %d", got.Errors, len(tt.wantErrPrefix))
			}
			for i, p := range tt.wantErrPrefix {
				if !strings.HasPrefix(got.Errors[i], p) {
					t.Errorf("errors[%d] = %q, want prefix %q", i, got.Errors[i], p)
				}
			}
		})
	}
}

func TestFaceErrorText(t *testing.T) {
	smiley := newServer(t, Config{Role: RoleSmiley, ErrorFraction: 100}, Options{})
	color := newServer(t, Config{Role: RoleColor, Color: "#66CCEE"}, Options{})
	sAddr := serve(t, smiley)
	face := newServer(t, Config{Role: RoleFace, SmileyService: sAddr, ColorService: serve(t, color)}, Options{})
	got := decodeFace(t, get(t, http.DefaultClient, "GET", "http://"+serve(t, face)+"/center/", nil))
	want := []string{"smiley: error from " + sAddr + ": 500 (Error fraction triggered)"}
	if diff := cmp.Diff(want, got.Errors); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestFaceForwarding(t *testing.T) {
	sb := &fixedBackend{status: 200, body: `{"smiley":"&#x1F603;"}`}
	cb := &fixedBackend{status: 200, body: `{"color":"#66CCEE"}`}
	face := newServer(t, Config{Role: RoleFace, UserHeader: "X-Who", SmileyService: backendAddr(t, sb), ColorService: backendAddr(t, cb)}, Options{})
	base := "http://" + serve(t, face)

	tests := []struct {
		path, user, ua      string
		wantPath            string
		wantUser, wantAgent string
	}{
		{"/center/?row=1&col=2&now=x", "alice", "browser/1", "/center/", "alice", "browser/1"},
		{"/edge/more/stuff", "", "", "/edge/", "unknown", "unknown"},
		{"/", "bob", "b", "/", "bob", "b"},
	}
	for _, tt := range tests {
		hdr := map[string]string{"User-Agent": tt.ua}
		if tt.user != "" {
			hdr["X-Who"] = tt.user
		}
		decodeFace(t, get(t, http.DefaultClient, "GET", base+tt.path, hdr))
		for name, b := range map[string]*fixedBackend{"smiley": sb, "color": cb} {
			r := b.last()
			if r.URL.Path != tt.wantPath || r.URL.RawQuery != "" {
				t.Errorf("%s: %s reached as %s?%s, want %s with no query", tt.path, name, r.URL.Path, r.URL.RawQuery, tt.wantPath)
			}
			if r.Header.Get("X-Who") != tt.wantUser || r.UserAgent() != tt.wantAgent {
				t.Errorf("%s: %s got user %q agent %q, want %q %q", tt.path, name, r.Header.Get("X-Who"), r.UserAgent(), tt.wantUser, tt.wantAgent)
			}
		}
	}
}

func TestFaceCallsInParallel(t *testing.T) {
	// Each backend holds its request until the other has arrived: only
	// parallel calls can finish.
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived.Done()
			done := make(chan struct{})
			go func() { arrived.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				w.WriteHeader(500)
				return
			}
			w.Write([]byte(body))
		})
	}
	face := newServer(t, Config{Role: RoleFace,
		SmileyService: backendAddr(t, both(`{"smiley":"&#x1F603;"}`)),
		ColorService:  backendAddr(t, both(`{"color":"#66CCEE"}`))}, Options{})
	got := decodeFace(t, get(t, http.DefaultClient, "GET", "http://"+serve(t, face)+"/center/", nil))
	if len(got.Errors) != 0 {
		t.Errorf("errors %q: calls were not made in parallel", got.Errors)
	}
}

func TestFaceOverMaxRate(t *testing.T) {
	var calls atomic.Int32
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"smiley":"&#x1F603;","color":"#66CCEE"}`))
	})
	clock := newFakeClock()
	face := newServer(t, Config{Role: RoleFace, MaxRate: 0.3, ErrorFraction: 100,
		SmileyService: backendAddr(t, count), ColorService: backendAddr(t, count)}, Options{Now: clock.Now})
	base := "http://" + serve(t, face)
	// 0.3 RPS over 10 s: requests 1 and 2 pass the limiter (and hit the
	// error fraction); the third is over the limit.
	for i := 1; i <= 2; i++ {
		if r := get(t, http.DefaultClient, "GET", base+"/center/", nil); r.status != 500 {
			t.Fatalf("request %d = %d, want 500 from ERROR_FRACTION=100", i, r.status)
		}
	}
	got := decodeFace(t, get(t, http.DefaultClient, "GET", base+"/center/", nil))
	want := faceReply{Smiley: Smileys["Kaboom"], Color: "#CCBB44", Rate: "0.3 RPS", Errors: []string{""}, Path: "/center/"}
	got.Latency = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rate-limited face (-want +got):\n%s", diff)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("face made %d downstream calls, want none", n)
	}
}

func TestFaceUsesHTTPProxy(t *testing.T) {
	// Local mode: face reaches "smiley" and "color" through its sidecar,
	// named by HTTP_PROXY. This stand-in proxy answers by Host.
	var hosts sync.Map
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, r.URL.String())
		switch r.Host {
		case "smiley.faces":
			w.Write([]byte(`{"smiley":"&#x1F60D;"}`))
		case "color.faces:80":
			w.WriteHeader(http.StatusGatewayTimeout)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "localhost,127.0.0.1")
	face := newServer(t, Config{Role: RoleFace, SmileyService: "smiley.faces", ColorService: "color.faces:80"}, Options{})
	got := decodeFace(t, get(t, http.DefaultClient, "GET", "http://"+serve(t, face)+"/center/", nil))
	if got.Smiley != "&#x1F60D;" || got.Color != Colors["red"] {
		t.Errorf("through the proxy: smiley %q color %q, want heart eyes and red (504)", got.Smiley, got.Color)
	}
	if u, ok := hosts.Load("smiley.faces"); !ok || u != "http://smiley.faces/center/" {
		t.Errorf("proxy saw smiley request %v, want absolute URL http://smiley.faces/center/", u)
	}
}

func FuzzInterpretReply(f *testing.F) {
	f.Add("smiley", 200, []byte(`{"smiley":"&#x1F603;"}`))
	f.Add("color", 200, []byte(`{"color":7}`))
	f.Add("color", 504, []byte("upstream request timeout"))
	f.Add("smiley", 599, []byte(""))
	f.Add("smiley", 200, []byte(`[`))
	f.Fuzz(func(t *testing.T, key string, status int, body []byte) {
		if key != "smiley" {
			key = "color"
		}
		d := interpretReply(key, key, status, body)
		if status != 200 && !d.failed {
			t.Fatalf("status %d not a failure", status)
		}
		if d.failed {
			if !strings.HasPrefix(d.errMsg, key+": ") {
				t.Fatalf("error %q lacks the %q prefix", d.errMsg, key)
			}
			want := mapFailure(key, status)
			if status == 200 {
				want = mapFailure(key, 500)
			}
			if d.value != want {
				t.Fatalf("failure drawn as %q, want %q", d.value, want)
			}
		}
	})
}
