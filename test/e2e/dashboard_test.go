package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardOnFacesDemo opens the dashboard that 'weft demo' serves in
// headless Chromium while the test drives traffic through the ingress:
// the workloads table lists the four Faces workloads with non-zero RPS
// (read from the real proxies' metrics), the topology draws face's calls
// to smiley and color, and the live tap shows requests as they happen.
// With WEFT_SCREENSHOT_DIR set it saves dashboard-faces.png,
// dashboard-topology.png and dashboard-tap.png there (docs/ holds them).
func TestDashboardOnFacesDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole mesh")
	}
	browser := dashboardChromium(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	m := startDemo(t, "--ingress-port-map", "8080="+port, "--ingress-port-map", "8443=0")
	m.waitSettled(t, "faces", map[string]int{"faces-gui": 1, "face": 1, "smiley": 1, "color": 1}, 60*time.Second)

	// A few requests per second through the ingress: /face/ reaches face,
	// which calls smiley and color; /faces/ reaches the GUI.
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, path := range []string{"/face/edge/", "/face/center/", "/faces/"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+port+path, nil)
				req.Host = "faces.example.com"
				if resp, err := httpClient.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	tab := dashboardTab(t, browser)
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+m.dashboardAddr+"/#/workloads")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`setNamespace('faces'); location.hash = '#/workloads'`)); err != nil {
		t.Fatal(err)
	}
	// The collector scrapes every 2s: RPS needs two scrapes with traffic
	// between them.
	for _, dep := range []string{"faces-gui", "face", "smiley", "color"} {
		dashboardWait(t, tab, 30*time.Second, dep+" with a non-zero RPS in the workloads table", fmt.Sprintf(`(() => {
			const row = document.querySelector('#workloads tr[data-name=%q]');
			const rps = row && row.querySelector('td.rps');
			return !!rps && /^[0-9.]+rps$/.test(rps.textContent) && parseFloat(rps.textContent) > 0;
		})()`, dep))
	}
	dashboardWait(t, tab, 5*time.Second, "exactly the four Faces workloads", `document.querySelectorAll('#workloads tbody tr').length === 4`)
	dashboardShot(t, tab, "dashboard-faces.png")

	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`location.hash = '#/topology'`)); err != nil {
		t.Fatal(err)
	}
	dashboardWait(t, tab, 20*time.Second, "face's edges to smiley and color in the topology", `(() => {
		const edge = (s, d) => document.querySelector('#topology svg g.edge[data-src="' + s + '"][data-dst="' + d + '"]');
		const rated = (e) => !!e && /rps/.test(e.textContent) && !e.textContent.includes('-rps');
		return document.querySelectorAll('#topology svg g.node').length >= 4 && rated(edge('face', 'smiley')) && rated(edge('face', 'color'));
	})()`)
	dashboardShot(t, tab, "dashboard-topology.png")

	if err := chromedp.Do(tab, chromedp.Evaluate[chromedp.Void](`location.hash = '#/tap'`)); err != nil {
		t.Fatal(err)
	}
	dashboardWait(t, tab, 20*time.Second, "the tap panel offering faces/face", `!document.querySelector('#tap-panel').hidden &&
		[...document.querySelectorAll('#tap-resource option')].some(o => o.value === 'faces/face')`)
	if err := chromedp.Do(tab,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#tap-resource').value = 'faces/face'`),
		chromedp.Click(chromedp.CSS("#tap-start")),
	); err != nil {
		t.Fatal(err)
	}
	dashboardWait(t, tab, 20*time.Second, "tapped requests of face", `(() => {
		const rows = [...document.querySelectorAll('#tap-rows tr.tap-row')];
		const cells = (r) => [...r.querySelectorAll('td')].map(td => td.textContent.trim());
		// DIR FROM TO METHOD PATH STATUS LATENCY: a request of face's that got its response.
		const done = rows.map(cells).filter(c => c[3] === 'GET' && c[4].startsWith('/') && /^[2-5][0-9][0-9]$/.test(c[5]) && /s$/.test(c[6]));
		return rows.length >= 8 && done.length >= 3 && rows.map(cells).every(c => c[1].startsWith('face-') || c[2].startsWith('face-'));
	})()`)
	dashboardShot(t, tab, "dashboard-tap.png")
}

// dashboardChromium finds a Chromium to drive, or skips the test.
func dashboardChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("skipping the dashboard browser test: no Chromium found (install Debian's chromium, or set WEFT_CHROMIUM)")
	return ""
}

// dashboardTab starts a headless Chromium with its own profile and returns
// a tab; both end with the test.
func dashboardTab(t *testing.T, browser string) context.Context {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	return ctx
}

// dashboardWait polls a JavaScript predicate in the page until it is true.
func dashboardWait(t *testing.T, tab context.Context, timeout time.Duration, what, predicate string) {
	t.Helper()
	// A view is rebuilt when the hash changes: until it is, its elements
	// may be missing, which is "not yet", not an error.
	guarded := "(() => { try { return !!(" + predicate + "); } catch (e) { return false; } })()"
	_, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](guarded,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		html, _ := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("waiting for %s: %v\npage: %.3000s", what, err, html)
	}
}

// dashboardShot saves a full-page screenshot under WEFT_SCREENSHOT_DIR.
func dashboardShot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("WEFT_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved to %s", path)
}
