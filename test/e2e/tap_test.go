package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/demo/faces"
)

// TestVizTap: 'weft viz tap' against a running mesh prints Linkerd's req,
// rsp and end lines for a request sent through the ingress, read from the
// sidecar's tap server that the supervisor announced on the Pod. smiley
// calls nothing, so every request its proxy sees is inbound (from face).
func TestVizTap(t *testing.T) {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	m := startMesh(t, string(faces.Manifests()), "--ingress-port-map", "8080="+port, "--ingress-port-map", "8443=0")
	m.waitSettled(t, "faces", map[string]int{"faces-gui": 1, "face": 1, "smiley": 1, "color": 1}, 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, weftBin, "--state-dir", m.dir, "viz", "tap", "deploy/smiley", "-n", "faces", "--limit", "1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Drive requests until the tap has seen one (it ends at its limit).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/face/center/", nil)
			req.Host = "faces.example.com"
			if resp, err := httpClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	if err != nil {
		t.Fatalf("weft viz tap: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^req id=0:\d+ proxy=in src=127\.0\.0\.1:\d+ dst=127\.0\.0\.1:\d+ tls=true :method=GET :authority=\S+ :path=/\S*$`),
		regexp.MustCompile(`^rsp id=0:\d+ proxy=in src=\S+ dst=\S+ tls=true :status=\d{3} latency=\d+µs$`),
		regexp.MustCompile(`^end id=0:\d+ proxy=in src=\S+ dst=\S+ tls=true duration=\d+µs response-length=\d+B$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("weft viz tap --limit 1 printed %d lines, want 3:\n%s", len(lines), out.String())
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}
	// One request: the three lines share its id and addresses.
	key := func(l string) string { f := strings.Fields(l); return strings.Join(f[1:5], " ") }
	if len(strings.Fields(lines[0])) > 5 && (key(lines[1]) != key(lines[0]) || key(lines[2]) != key(lines[0])) {
		t.Errorf("lines are not of one request:\n%s", out.String())
	}
}
