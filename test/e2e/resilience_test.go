package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/demo/faces"
)

// The workshop's resources (Faces k8s/02-retries and k8s/03-timeouts),
// applied to a running mesh one step at a time.
const (
	faceMappingRetry = `apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: face-mapping
  namespace: faces
spec:
  hostname: "*"
  prefix: /face/
  service: face.faces
  timeout_ms: 0
  retry_policy:
    retry_on: "5xx"
    num_retries: 1
`
	faceMappingTimeout = `apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: face-mapping
  namespace: faces
spec:
  hostname: "*"
  prefix: /face/
  service: face.faces
  timeout_ms: 250
  retry_policy:
    retry_on: "5xx"
    num_retries: 1
`
	profileTmpl = `apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: %[1]s.faces.svc.cluster.local
  namespace: faces
spec:
  routes:
  - name: GET /
    condition:
      method: GET
      pathRegex: /.*
    isRetryable: true
%[2]s`
)

func profiles(timeout string) string {
	extra := ""
	if timeout != "" {
		extra = "    timeout: " + timeout + "\n"
	}
	return fmt.Sprintf(profileTmpl, "smiley", extra) + "---\n" + fmt.Sprintf(profileTmpl, "color", extra)
}

// faceResult is one request through the ingress.
type faceResult struct {
	status  int
	body    string
	smiley  string
	color   string
	elapsed time.Duration
}

type faceStats struct {
	n, face500, ingress504, ok   int
	cursing, grey, sleeping, red int
	slowest                      time.Duration
	other                        map[int]int
	sleepy                       []string // how long sleeping replies took (diagnostics)
}

func (s faceStats) String() string {
	return fmt.Sprintf("%d requests: face 500 %.1f%%, ingress 504 %.1f%%; of %d 200s: cursing %.1f%%, grey %.1f%%, sleeping %.1f%%, red %.1f%%; slowest %v; other statuses %v",
		s.n, pct(s.face500, s.n), pct(s.ingress504, s.n), s.ok, pct(s.cursing, s.ok), pct(s.grey, s.ok), pct(s.sleeping, s.ok), pct(s.red, s.ok), s.slowest, s.other)
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// drive sends rate requests per second for d through the ingress, each
// in its own goroutine (a fixed arrival rate, as the Faces GUI does), and
// waits for all of them.
func drive(t *testing.T, port string, rate int, d time.Duration) faceStats {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	defer client.CloseIdleConnections()
	var (
		mu  sync.Mutex
		res []faceResult
		wg  sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := oneFace(client, port)
			mu.Lock()
			res = append(res, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	s := faceStats{other: map[int]int{}}
	for _, r := range res {
		s.n++
		s.slowest = max(s.slowest, r.elapsed)
		switch {
		case r.status == 500:
			s.face500++
		case r.status == 504 && strings.Contains(r.body, "upstream request timeout"):
			s.ingress504++
		case r.status == 200:
			s.ok++
			switch r.smiley {
			case faces.Smileys["Cursing"]:
				s.cursing++
			case faces.Smileys["Sleeping"]:
				s.sleeping++
				if len(s.sleepy) < 5 {
					s.sleepy = append(s.sleepy, fmt.Sprintf("%v %.200s", r.elapsed.Round(time.Millisecond), r.body))
				}
			}
			switch strings.ToUpper(r.color) {
			case "#BBBBBB":
				s.grey++
			case "#EE6677":
				s.red++
			}
		default:
			s.other[r.status]++
		}
	}
	return s
}

func oneFace(client *http.Client, port string) faceResult {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/face/", nil)
	req.Host = "faces.example.com"
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return faceResult{status: -1, body: err.Error(), elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := faceResult{status: resp.StatusCode, body: string(b), elapsed: time.Since(start)}
	if resp.StatusCode == 200 {
		var v struct{ Smiley, Color string }
		if json.Unmarshal(b, &v) == nil {
			r.smiley, r.color = v.Smiley, v.Color
		}
	}
	return r
}

// metricsOf reads a Prometheus endpoint.
func metricsOf(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestFacesWorkshopResilience replays the resilience workshop on the Faces
// demo: the broken app (about 21% face errors, 21% smiley and color errors,
// slow smileys and colors) becomes usable with ingress retries, mesh
// retries (ServiceProfile isRetryable under the retry budget) and mesh
// timeouts (300ms: slow smileys sleep, slow colors turn red), and the
// ingress's own timeout_ms then bounds every face request.
func TestFacesWorkshopResilience(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole mesh")
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	m := startMesh(t, string(faces.Manifests()), "--ingress-port-map", "8080="+port, "--ingress-port-map", "8443=0")
	st := m.waitSettled(t, "faces", map[string]int{"faces-gui": 1, "face": 1, "smiley": 1, "color": 1}, 60*time.Second)
	faceAdmin := ""
	for _, c := range replicas(st, "faces", "face") {
		faceAdmin = c.Addresses["admin"]
	}
	if faceAdmin == "" {
		t.Fatalf("no admin address for face's proxy in %+v", st.Components)
	}
	eventually(t, 30*time.Second, "a face reply through the ingress", func() error {
		if r := oneFace(http.DefaultClient, port); r.status != 200 && r.status != 500 {
			return fmt.Errorf("%d: %s", r.status, r.body)
		}
		return nil
	})
	apply := func(name, manifest string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := m.weft("apply", "-f", f); code != 0 {
			t.Fatalf("weft apply %s: exit %d:\n%s", name, code, out)
		}
	}
	const rate = 40

	// 1. The broken app.
	base := drive(t, port, rate, 6*time.Second)
	t.Logf("baseline: %v", base)
	if f := pct(base.face500, base.n); f < 12 || f > 32 {
		t.Errorf("baseline face 500 rate %.1f%%, want about 21%%", f)
	}
	if c, g := pct(base.cursing, base.ok), pct(base.grey, base.ok); c < 10 || g < 10 {
		t.Errorf("baseline smiley errors %.1f%% and color errors %.1f%%, want about 21%% each", c, g)
	}

	// 2. Retries: the face Mapping retries 5xx once; smiley and color
	// routes are retryable. Wait until face's proxy routes smiley and color
	// calls (the ingress reloads from the same store at least as fast).
	apply("retries", faceMappingRetry+"---\n"+profiles(""))
	eventually(t, 20*time.Second, "face's proxy using the smiley and color routes", func() error {
		oneFace(http.DefaultClient, port)
		text, err := metricsOf(faceAdmin)
		if err != nil {
			return err
		}
		for _, svc := range []string{"smiley", "color"} {
			if !strings.Contains(text, `route_actual_request_total{`) || !strings.Contains(text, `dst="`+svc+`.faces.svc.cluster.local:80",rt_route="GET /"`) {
				return fmt.Errorf("no route_actual_request_total for %s's GET / route yet", svc)
			}
		}
		return nil
	})
	retried := drive(t, port, rate, 6*time.Second)
	t.Logf("with retries: %v", retried)
	// 0.21^2 = 4.4% ± 1.3% over ~240 requests; 10% is well beyond noise
	// and well below the 21% without retries.
	if f := pct(retried.face500, retried.n); f > 10 {
		t.Errorf("with retries the face 500 rate is %.1f%%, want about 4.5%% (0.21^2)", f)
	}
	if c, g := pct(retried.cursing, retried.ok), pct(retried.grey, retried.ok); c > 6 || g > 6 {
		t.Errorf("with retries smiley errors %.1f%% and color errors %.1f%%, want them mostly gone", c, g)
	}
	text, _ := metricsOf(faceAdmin)
	if !strings.Contains(text, "outbound_http_route_retry_requests_total{") {
		t.Errorf("face's proxy exports no outbound_http_route_retry_requests_total")
	}

	// 3. Timeouts: smiley and color routes time out after 300ms (all
	// attempts), so slow smileys sleep and slow colors turn red, and no
	// face call waits much longer than that.
	apply("timeouts", profiles("300ms"))
	eventually(t, 20*time.Second, "a sleeping face or a red background", func() error {
		r := oneFace(http.DefaultClient, port)
		if r.smiley == faces.Smileys["Sleeping"] || strings.EqualFold(r.color, "#EE6677") {
			return nil
		}
		return fmt.Errorf("got %d %s", r.status, r.body)
	})
	timed := drive(t, port, rate, 6*time.Second)
	t.Logf("with 300ms mesh timeouts: %v", timed)
	// Delays of 500 and 1500ms are 2 of 9 buckets (22%); failed attempts
	// retried past 300ms add a little.
	if s, r := pct(timed.sleeping, timed.ok), pct(timed.red, timed.ok); s < 10 || s > 45 || r < 10 || r > 45 {
		t.Errorf("with timeouts %.1f%% sleeping smileys and %.1f%% red colors, want about 22%% each", s, r)
	}
	if timed.slowest > 1200*time.Millisecond {
		t.Errorf("with 300ms timeouts the slowest face request took %v", timed.slowest)
	}
	if c, g := pct(timed.cursing, timed.ok), pct(timed.grey, timed.ok); c > 6 || g > 6 {
		t.Errorf("with timeouts smiley errors %.1f%% and color errors %.1f%%, want them mostly gone", c, g)
	}

	// 4. The ingress's timeout_ms: 250 bounds each face request: slower
	// ones get Envoy's 504 "upstream request timeout".
	apply("ingress-timeout", faceMappingTimeout)
	eventually(t, 20*time.Second, "an ingress 504", func() error {
		if r := oneFace(http.DefaultClient, port); r.status != 504 {
			return fmt.Errorf("got %d", r.status)
		}
		return nil
	})
	bounded := drive(t, port, rate, 4*time.Second)
	t.Logf("with timeout_ms 250: %v; sleeping replies: %q", bounded, bounded.sleepy)
	if f := pct(bounded.ingress504, bounded.n); f < 10 || f > 70 {
		t.Errorf("with timeout_ms 250, %.1f%% of face requests timed out at the ingress, want the slow ones (~40%%)", f)
	}
	if bounded.slowest > 900*time.Millisecond {
		t.Errorf("with timeout_ms 250 the slowest face request took %v", bounded.slowest)
	}
	if len(bounded.other) > 0 && slices.Max(mapsValues(bounded.other)) > bounded.n/20 {
		t.Errorf("unexpected statuses: %v", bounded.other)
	}
}

func mapsValues(m map[int]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
