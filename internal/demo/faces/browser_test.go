package faces

// Headless-Chromium tests of the GUI page: the JavaScript is half of the
// demo, so it is tested in a real browser against real servers.
//
// They skip when no Chromium is installed (CI installs it). Set
// WEFT_CHROMIUM to a browser binary to pick one, and WEFT_SCREENSHOT=path to
// save a PNG of the running demo (docs/faces-gui.png is made this way).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const (
	emojiGrinning = "\U0001F603"
	emojiSleeping = "\U0001F634"
	emojiConfused = "\U0001F615"
	emojiNeutral  = "\U0001F610"
	emojiUpset    = "\U0001F62C"
	emojiCursing  = "\U0001F92C"
	emojiKaboom   = "\U0001F92F"
)

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("skipping browser test: no Chromium found (install Debian's chromium, or set WEFT_CHROMIUM to a Chrome/Chromium binary)")
	return ""
}

// newBrowser starts a headless Chromium for the test and returns a tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
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
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	// Start the browser now, so a broken install fails here, clearly.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// cellState is one cell as the page sees it.
type cellState struct {
	Row      int    `json:"row"`
	Col      int    `json:"col"`
	Status   int    `json:"status"`
	Timeouts int    `json:"timeouts"`
	Smiley   string `json:"smiley"`
	BG       string `json:"bg"`
	Border   string `json:"border"`
	Opacity  string `json:"opacity"`
	Updated  bool   `json:"updated"`
}

const cellsJS = `window.faces.cells.map(c => ({row: c.row, col: c.col, status: c.lastStatus,
	timeouts: c.timeouts, smiley: c.drawn.smiley, bg: c.drawn.bg, border: c.drawn.border,
	opacity: c.el.style.opacity, updated: c.lastUpdated !== null}))`

func cells(t *testing.T, ctx context.Context) []cellState {
	t.Helper()
	cs, err := chromedp.Run(ctx, chromedp.Evaluate[[]cellState](cellsJS))
	if err != nil {
		t.Fatalf("reading cells: %v", err)
	}
	return cs
}

// waitFor polls a JavaScript predicate in the page until it holds.
func waitFor(t *testing.T, ctx context.Context, what, predicate string, timeout time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting for %s: %v\ncells: %+v", what, err, cells(t, ctx))
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

func saveScreenshot(t *testing.T, ctx context.Context) {
	path := os.Getenv("WEFT_SCREENSHOT")
	if path == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("saving screenshot: %v", err)
	}
	t.Logf("screenshot saved to %s", path)
}

// TestBrowserDemo runs gui, face, smiley and color as the chart configures
// them, on loopback, and watches the page: cells must draw smileys, and
// with 20% errors and delays up to 1.5 s some must show face errors and
// some must fade.
func TestBrowserDemo(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	buckets := []int{0, 5, 10, 15, 20, 50, 200, 500, 1500}
	smiley := serve(t, newServer(t, Config{Role: RoleSmiley, Smiley: Smileys["Grinning"], ErrorFraction: 20, DelayBuckets: buckets, Pod: "smiley-5f7b9-qx2lm"}, Options{Rand: seeded(11)}))
	color := serve(t, newServer(t, Config{Role: RoleColor, Color: Colors["blue"], ErrorFraction: 20, DelayBuckets: buckets, Pod: "color-6c4d8-r8t2w"}, Options{Rand: seeded(12)}))
	face := serve(t, newServer(t, Config{Role: RoleFace, ErrorFraction: 20, SmileyService: smiley, ColorService: color, Pod: "face-7d9f4-k3v8n"}, Options{Rand: seeded(13)}))
	gui := serve(t, newServer(t, Config{Role: RoleGUI, PageColor: "white", ShowPods: true, FaceService: face, Pod: "faces-gui-84c6b-zt5pd"}, Options{}))

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+gui+"/")); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	if title := eval[string](t, ctx, `document.querySelector('h1').textContent`); title != "Faces" {
		t.Errorf("h1 = %q, want Faces", title)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#grid .cell').length`); n != 16 {
		t.Fatalf("%d cells, want 16", n)
	}
	waitFor(t, ctx, "a successful cell", `window.faces.cells.some(c => c.drawn.smiley === '`+emojiGrinning+`' && c.drawn.bg === '#66CCEE' && c.drawn.border === '#BBBBBB')`, 20*time.Second)
	waitFor(t, ctx, "a face error (confused on purple)", `window.faces.cells.some(c => c.lastStatus === 500 && c.drawn.smiley === '`+emojiConfused+`' && c.drawn.bg === '#AA3377')`, 20*time.Second)
	waitFor(t, ctx, "a slow cell fading", `window.faces.cells.some(c => c.lastUpdated !== null && parseFloat(c.el.style.opacity) < 0.6)`, 20*time.Second)
	waitFor(t, ctx, "a smiley error (cursing, purple border)", `window.faces.cells.some(c => c.drawn.smiley === '`+emojiCursing+`' && c.drawn.border === '#AA3377')`, 20*time.Second)
	waitFor(t, ctx, "the face pod in the pod column", `[...document.querySelectorAll('#podlist .pod .name')].map(e => e.textContent).join() === 'face-k3v8n'`, 10*time.Second)
	if hidden := eval[bool](t, ctx, `document.getElementById('podcol').hidden`); hidden {
		t.Error("pod column hidden with SHOW_PODS=true")
	}

	if os.Getenv("WEFT_SCREENSHOT") != "" {
		// A representative moment: every cell has answered a few times, most
		// are up, one or more is fading, and several kinds of state show.
		_, _ = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`(() => {
			const cs = window.faces.cells;
			const up = cs.filter(c => parseFloat(c.el.style.opacity) > 0.9).length;
			const kinds = new Set(cs.map(c => c.drawn.smiley + c.drawn.bg)).size;
			return window.faces.stats.total >= 48 && cs.every(c => c.lastUpdated !== null) && up >= 13 && up < 16 && kinds >= 3;
		})()`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
		saveScreenshot(t, ctx)
	}
}

// scriptedFace stands in for face, answering each cell (by the row and col
// of its query) with one row of the GUI's state table.
type scriptedFace struct {
	mu    sync.Mutex
	start time.Time
	reqs  map[[2]int][]time.Duration // arrival times per cell
	bad   []string                   // problems with requests, reported by the test
}

func (f *scriptedFace) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	row, err1 := strconv.Atoi(q.Get("row"))
	col, err2 := strconv.Atoi(q.Get("col"))
	f.mu.Lock()
	if f.reqs == nil {
		f.reqs = map[[2]int][]time.Duration{}
		f.start = time.Now()
	}
	key := [2]int{row, col}
	f.reqs[key] = append(f.reqs[key], time.Since(f.start))
	n := len(f.reqs[key])
	wantPath := "/face/edge/"
	if row >= 1 && row <= 2 && col >= 1 && col <= 2 {
		wantPath = "/face/center/"
	}
	_, errNow := time.Parse(time.RFC3339Nano, q.Get("now"))
	switch {
	case err1 != nil || err2 != nil || errNow != nil:
		f.bad = append(f.bad, "bad query "+r.URL.RawQuery)
	case r.URL.Path != wantPath:
		f.bad = append(f.bad, fmt.Sprintf("cell %d,%d asked for %s, want %s", row, col, r.URL.Path, wantPath))
	case r.Header.Get("Cache-Control") != "no-cache, no-store, max-age=0" ||
		r.Header.Get("X-Faces-User") != "unknown" || r.Header.Get("X-Custom-Header") != "custom":
		f.bad = append(f.bad, fmt.Sprintf("cell %d,%d headers %v", row, col, r.Header))
	}
	f.mu.Unlock()

	ok := `{"smiley":"&#x1F603;","color":"#66CCEE","errors":[],"latency":1}`
	w.Header().Set("Content-Type", "application/json")
	switch key {
	case [2]int{0, 0}:
		respond(w, 200, ok)
	case [2]int{0, 1}:
		respond(w, 200, "<html>not json</html>")
	case [2]int{0, 2}, [2]int{0, 3}:
		// One good reply, then timeouts (504) or rate limits (429): the cell
		// keeps its data and counts, and after five shows a sleeping face.
		if n == 1 {
			respond(w, 200, ok)
		} else if key[1] == 2 {
			respond(w, 504, "upstream request timeout")
		} else {
			respond(w, 429, "too many requests")
		}
	case [2]int{1, 0}:
		respond(w, 599, "Latched into error state")
	case [2]int{1, 1}:
		respond(w, 500, "Error fraction triggered")
	case [2]int{1, 2}:
		respond(w, 404, "not found")
	case [2]int{1, 3}:
		// A network error: drop the connection without a reply.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		respond(w, 500, "cannot hijack")
	case [2]int{2, 0}:
		// Slow: after the first reply, every reply takes 3.5 s, so the
		// cell's last reply ages past 2.5 s and the cell disappears.
		if n > 1 {
			select {
			case <-time.After(3500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		respond(w, 200, ok)
	case [2]int{2, 1}:
		respond(w, 200, `{"smiley":"&#x1F92C;","color":"#66CCEE","errors":["smiley: error from smiley: 500 (Error fraction triggered)"]}`)
	case [2]int{2, 2}:
		respond(w, 200, `{"smiley":"&#x1F92F;","color":"#CCBB44","errors":[""]}`)
	case [2]int{2, 3}:
		// Legacy face: a literal "504" smiley keeps the old one and counts
		// a timeout; good replies in between clear the count.
		if n%2 == 1 {
			respond(w, 200, ok)
		} else {
			respond(w, 200, `{"smiley":"504","color":"#EE6677","errors":["smiley: timeout"]}`)
		}
	default: // row 3: pods
		pods := []string{"face-abc12-111", "face-abc12-222", "faces-gui-9f8e7-333", "face-abc12-111"}
		w.Header().Set("X-Faces-Pod", pods[col])
		respond(w, 200, ok)
	}
}

func respond(w http.ResponseWriter, status int, body string) {
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// TestBrowserCellStates checks the page's reaction to every kind of reply
// in the GUI's state table, its polling schedule and its buttons.
func TestBrowserCellStates(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	gui := newServer(t, Config{Role: RoleGUI, PageColor: "#FAFAFA", FaceService: "unused"}, Options{})
	face := &scriptedFace{}
	mux := http.NewServeMux()
	mux.Handle("/face/", face)
	mux.Handle("/", gui)
	ts := newLoopbackServer(t, mux)

	// Log every request the page sends, with its time in the page, before
	// the page's own script runs: the schedule is checked on the browser's
	// clock, free of network queueing.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: sendLogJS}); err != nil {
		t.Fatalf("installing the request log: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(ts+"/")); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	// Before any reply: grey, half transparent, empty.
	// Row 3 first asks 1.5 s after the page starts, so it is still waiting.
	for _, c := range eval[[]cellState](t, ctx, cellsJS) {
		if c.Row == 3 && (c.Smiley != "" || c.BG != "#BBBBBB" || c.Updated) {
			t.Errorf("initial cell %+v, want empty grey", c)
		}
	}
	if op := eval[string](t, ctx, `getComputedStyle(document.getElementById('cell-3-3')).opacity`); op != "0.5" {
		t.Errorf("initial opacity %s, want 0.5", op)
	}

	// Some states last only a couple of seconds; a recorder in the page
	// notes each the moment it appears, so a slow test run cannot miss it.
	eval[bool](t, ctx, `(() => {
		const G = '`+emojiGrinning+`', S = '`+emojiSleeping+`';
		const rec = window.__rec = {kept: {}, sleep: {}, slowFaded: false, legacy: false};
		setInterval(() => {
			const cs = window.faces.cells;
			for (const i of [2, 3]) {
				const c = cs[i];
				if (c.timeouts >= 1 && c.timeouts <= 4 && c.drawn.smiley === G && c.drawn.bg === '#66CCEE') rec.kept[i] = true;
				if (c.drawn.smiley === S && !(i in rec.sleep)) rec.sleep[i] = {timeouts: c.timeouts, bg: c.drawn.bg, opacity: c.el.style.opacity};
			}
			const slow = cs[8];
			if (slow.lastUpdated !== null && slow.el.style.opacity === '0' && slow.drawn.smiley === G) rec.slowFaded = true;
			const old = cs[11];
			if (old.timeouts === 1 && old.drawn.smiley === G && old.drawn.bg === '#EE6677' && old.drawn.border === '#AA3377') rec.legacy = true;
		}, 20);
		return true;
	})()`)
	// Cells that get 504/429 keep the old data while counting...
	waitFor(t, ctx, "504 and 429 cells keeping their data", `window.__rec.kept[2] && window.__rec.kept[3]`, 15*time.Second)
	waitFor(t, ctx, "the slow cell fading out", `window.__rec.slowFaded`, 15*time.Second)
	waitFor(t, ctx, "the legacy \"504\" smiley keeping the old one", `window.__rec.legacy`, 15*time.Second)
	// ...and at the fifth in a row draw a faint sleeping face.
	waitFor(t, ctx, "sleeping faces", `2 in window.__rec.sleep && 3 in window.__rec.sleep`, 20*time.Second)
	if got := eval[string](t, ctx, `JSON.stringify([window.__rec.sleep[2], window.__rec.sleep[3]])`); got != `[{"timeouts":5,"bg":"#EE6677","opacity":"0.2"},{"timeouts":5,"bg":"#EE6677","opacity":"0.2"}]` {
		t.Errorf("cells 0,2 and 0,3 when first sleeping: %s, want 5 timeouts, red, opacity 0.2", got)
	}

	want := map[[2]int]cellState{
		{0, 0}: {Status: 200, Smiley: emojiGrinning, BG: "#66CCEE", Border: "#BBBBBB"},
		{0, 1}: {Status: 200, Smiley: emojiConfused, BG: "#AA3377", Border: "#AA3377"},
		{1, 0}: {Status: 599, Smiley: emojiNeutral, BG: "#CCBB44", Border: "#BBBBBB"},
		{1, 1}: {Status: 500, Smiley: emojiConfused, BG: "#AA3377", Border: "#BBBBBB"},
		{1, 2}: {Status: 404, Smiley: emojiUpset, BG: "#AA3377", Border: "#BBBBBB"},
		{1, 3}: {Status: 0, Smiley: emojiConfused, BG: "#AA3377", Border: "#BBBBBB"},
		{2, 1}: {Status: 200, Smiley: emojiCursing, BG: "#66CCEE", Border: "#AA3377"},
		{2, 2}: {Status: 200, Smiley: emojiKaboom, BG: "#CCBB44", Border: "#AA3377"},
	}
	for _, c := range cells(t, ctx) {
		w, ok := want[[2]int{c.Row, c.Col}]
		if !ok {
			continue
		}
		if c.Status != w.Status || c.Smiley != w.Smiley || c.BG != w.BG || c.Border != w.Border {
			t.Errorf("cell %d,%d = status %d %q %s/%s, want status %d %q %s/%s",
				c.Row, c.Col, c.Status, c.Smiley, c.BG, c.Border, w.Status, w.Smiley, w.BG, w.Border)
		}
		if c.Row == 1 && c.Col == 3 && c.Timeouts != 0 {
			t.Errorf("network error cell: timeouts %d, want unchanged 0", c.Timeouts)
		}
	}

	// Pods: hidden until asked for, then one mini-cell per face pod.
	if !eval[bool](t, ctx, `document.getElementById('podcol').hidden`) {
		t.Error("pod column shown without SHOW_PODS")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#pods"))); err != nil {
		t.Fatal(err)
	}
	if eval[bool](t, ctx, `document.getElementById('podcol').hidden`) || eval[string](t, ctx, `document.getElementById('pods').textContent`) != "Hide Pods" {
		t.Error("Show Pods did not show the pod column")
	}
	names := strings.Split(eval[string](t, ctx, `[...document.querySelectorAll('#podlist .name')].map(e => e.textContent).sort().join()`), ",")
	if !slices.Equal(names, []string{"face-111", "face-222"}) {
		t.Errorf("pod column %q, want face-111 and face-222 (faces-* skipped)", names)
	}

	// Counters and legend.
	if n := eval[int](t, ctx, `document.querySelectorAll('#legend li').length`); n != 7 {
		t.Errorf("legend has %d entries, want 7", n)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#counters"))); err != nil {
		t.Fatal(err)
	}
	if !eval[bool](t, ctx, `document.getElementById('stats').hidden`) || eval[string](t, ctx, `document.getElementById('counters').textContent`) != "Show Counters" {
		t.Error("Hide Counters did not hide the counters")
	}
	if u := eval[string](t, ctx, `document.getElementById('user').className + ':' + document.getElementById('user').textContent`); u != "user unknown:User: unknown" {
		t.Errorf("user line %q", u)
	}

	sends := eval[[]pageSend](t, ctx, `window.__sends`)

	// Stop clears every cell's timer; Start brings the polling back.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#run"))); err != nil {
		t.Fatal(err)
	}
	if s := eval[string](t, ctx, `document.getElementById('run').textContent + ':' + window.faces.isRunning() + ':' + window.faces.cells.every(c => c.timer === null)`); s != "Start:false:true" {
		t.Errorf("after Stop: %s, want Start:false:true", s)
	}
	before := face.count([2]int{0, 0})
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#run"))); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for face.count([2]int{0, 0}) == before {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("Start did not resume polling")
		}
	}

	face.mu.Lock()
	for _, b := range face.bad {
		t.Error(b)
	}
	face.mu.Unlock()
	checkSchedule(t, sends)
}

// sendLogJS records each request the page sends: its cell and its time
// since the document started. The time is taken when the request object is
// created, which is where the page starts its 2 s period (faces.js reads the
// clock just before): building the URL and headers before send() can take
// tens of milliseconds on a loaded machine, and timing send() would charge
// that to the gap after one request and credit it to the next.
const sendLogJS = `(() => {
	const t0 = performance.now();
	window.__sends = [];
	const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
	window.XMLHttpRequest = class extends XMLHttpRequest {
		constructor() {
			super();
			this.__at = performance.now() - t0;
		}
	};
	XMLHttpRequest.prototype.open = function (method, url) {
		this.__url = url;
		return open.apply(this, arguments);
	};
	XMLHttpRequest.prototype.send = function () {
		const q = new URL(this.__url, location.href).searchParams;
		window.__sends.push({row: +q.get('row'), col: +q.get('col'), at: this.__at});
		return send.apply(this, arguments);
	};
})()`

type pageSend struct {
	Row int     `json:"row"`
	Col int     `json:"col"`
	At  float64 `json:"at"` // ms since the document started
}

// checkSchedule checks the polling schedule on the page's clock: cell
// (r,c) first asks no sooner than r*500+c*125 ms after the page starts, the
// cells start in that order, and a cell asks again 2 s after it last asked
// (its reply's latency is part of the 2 s).
func checkSchedule(t *testing.T, sends []pageSend) {
	t.Helper()
	offset := func(s pageSend) float64 { return float64(s.Row*500 + s.Col*125) }
	byCell := map[[2]int][]float64{}
	var firsts []pageSend
	for _, s := range sends {
		k := [2]int{s.Row, s.Col}
		if len(byCell[k]) == 0 {
			firsts = append(firsts, s)
		}
		byCell[k] = append(byCell[k], s.At)
	}
	if len(firsts) != 16 {
		t.Fatalf("%d cells asked, want 16", len(firsts))
	}
	for i, s := range firsts {
		if s.At < offset(s) {
			t.Errorf("cell %d,%d first asked at %.0f ms, before its %.0f ms", s.Row, s.Col, s.At, offset(s))
		}
		if i > 0 && offset(firsts[i-1]) > offset(s) {
			t.Errorf("cell %d,%d asked before cell %d,%d", firsts[i-1].Row, firsts[i-1].Col, s.Row, s.Col)
		}
	}
	// Cell 0,0 answers at once, so it asks every 2 s (never sooner).
	times := byCell[[2]int{0, 0}]
	if len(times) < 4 {
		t.Fatalf("cell 0,0 asked %d times, want several", len(times))
	}
	var gaps []float64
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i]-times[i-1])
	}
	for _, g := range gaps {
		if g < 1990 {
			t.Errorf("cell 0,0 asked again after %.0f ms, want 2000 (gaps %v)", g, gaps)
		}
	}
	slices.Sort(gaps)
	if median := gaps[len(gaps)/2]; median > 3000 {
		t.Errorf("cell 0,0 asks every %.0f ms (median), want about 2000", median)
	}
}

func (f *scriptedFace) count(cell [2]int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs[cell])
}

// newLoopbackServer serves h on 127.0.0.1 until the test ends.
func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}
