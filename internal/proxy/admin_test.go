package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAdminPprof: Go's profiles are on the admin server only when asked
// for, and the other admin paths still answer beside them.
func TestAdminPprof(t *testing.T) {
	_, dstAddr := destination(t)
	for _, on := range []bool{false, true} {
		cfg := testConfig(dstAddr, "faces", "gui-1")
		cfg.AdminPprof = on
		p := runProxy(t, cfg)
		for path, want := range map[string]int{
			"/debug/pprof/heap?debug=1":      map[bool]int{false: 404, true: 200}[on],
			"/debug/pprof/allocs?debug=1":    map[bool]int{false: 404, true: 200}[on],
			"/debug/pprof/goroutine?debug=1": map[bool]int{false: 404, true: 200}[on],
			"/live":                          200,
			"/metrics":                       200,
		} {
			resp, err := http.Get("http://" + p.AdminAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("pprof %v: GET %s = %d, want %d", on, path, resp.StatusCode, want)
			}
			if on && strings.HasPrefix(path, "/debug/pprof/heap") && !strings.Contains(string(body), "heap profile") {
				t.Errorf("GET %s: not a heap profile: %.100q", path, body)
			}
		}
	}
}
