package forward

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// serve runs h on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// forwarder serves a Forwarder to upstream on a loopback port.
func forwarder(t *testing.T, upstream string, rewrite func(out, in *http.Request)) string {
	t.Helper()
	tr := NewHTTP1Transport(time.Second)
	t.Cleanup(tr.CloseIdleConnections)
	f := NewForwarder(tr, func(*http.Request) string { return upstream }, rewrite, slog.New(slog.DiscardHandler))
	return serve(t, f)
}

func TestForwarderHeaders(t *testing.T) {
	var got http.Header
	var gotQuery string
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotQuery = r.Header.Clone(), r.URL.RawQuery
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "drop")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		io.WriteString(w, "ok")
	}))
	px := forwarder(t, up, func(out, in *http.Request) { out.Header.Set("X-Rewritten", in.Method) })
	tests := []struct {
		name    string
		query   string
		general bool // served by httputil.ReverseProxy
	}{
		{"fast", "a=1&b=2", false},
		{"semicolon query", "a=1;b=2", true},
		{"bad escape", "a=%zz", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+px+"/p?"+tc.query, nil)
			req.Header.Set("Connection", "X-Hop-Req")
			req.Header.Set("X-Hop-Req", "drop")
			req.Header.Set("Proxy-Authorization", "Basic x")
			req.Header.Set("Te", "trailers, deflate")
			req.Header.Set("X-Forwarded-For", "10.0.0.1")
			req.Header.Set("Forwarded", "for=10.0.0.1")
			req.Header.Add("X-Keep", "1")
			req.Header.Add("X-Keep", "2")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			for _, h := range []string{"X-Hop-Req", "Proxy-Authorization", "Connection"} {
				if v, ok := got[h]; ok {
					t.Errorf("upstream got hop-by-hop %s: %q", h, v)
				}
			}
			for h, want := range map[string]string{"Te": "trailers", "X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1", "X-Keep": "1,2", "X-Rewritten": "GET", "User-Agent": "Go-http-client/1.1"} {
				if v := strings.Join(got[h], ","); v != want {
					t.Errorf("upstream got %s %q, want %q", h, v, want)
				}
			}
			if !tc.general && gotQuery != tc.query {
				t.Errorf("query %q reached the upstream as %q", tc.query, gotQuery)
			}
			if v := resp.Header.Get("X-Hop-Resp"); v != "" {
				t.Errorf("client got X-Hop-Resp %q", v)
			}
			if v := resp.Header.Get("Keep-Alive"); v != "" {
				t.Errorf("client got Keep-Alive %q", v)
			}
			if v := strings.Join(resp.Header["X-Multi"], ","); v != "a,b" {
				t.Errorf("client got X-Multi %q, want a,b", v)
			}
		})
	}
}

func TestForwarderNoUserAgent(t *testing.T) {
	var ua []string
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ua = r.Header["User-Agent"] }))
	px := forwarder(t, up, nil)
	c, err := net.Dial("tcp", px)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(ua) != 0 {
		t.Errorf("upstream got User-Agent %q; a client without one must not get Go's", ua)
	}
}

func TestForwarderTrailersAndStreaming(t *testing.T) {
	release := make(chan struct{})
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}))
	px := forwarder(t, up, nil)
	resp, err := http.Get("http://" + px + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The first chunk arrives before the upstream finishes: chunked
	// responses are flushed as they come.
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first " {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if v := resp.Trailer.Get("X-Sum"); v != "42" {
		t.Errorf("announced trailer X-Sum = %q, want 42", v)
	}
	if v := resp.Trailer.Get("X-Late"); v != "yes" {
		t.Errorf("unannounced trailer X-Late = %q, want yes", v)
	}
}

func TestForwarderRequestBodyAndFailure(t *testing.T) {
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d:%s", r.ContentLength, b)
	}))
	px := forwarder(t, up, nil)
	resp, err := http.Post("http://"+px+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "5:hello" {
		t.Errorf("upstream echoed %q, want 5:hello", b)
	}

	// An upstream that is gone: the proxy answers 502 with l5d-proxy-error.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	px = forwarder(t, dead, nil)
	resp, err = http.Get("http://" + px + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("L5d-Proxy-Error") == "" {
		t.Errorf("dead upstream: %d %v, want 502 with l5d-proxy-error", resp.StatusCode, resp.Header)
	}
}

func TestForwarderUpgrade(t *testing.T) {
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		c.Write([]byte(line))
	}))
	px := forwarder(t, up, nil)
	c, err := net.Dial("tcp", px)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
}

func TestQueryNeedsCleaning(t *testing.T) {
	for q, want := range map[string]bool{
		"": false, "a=1&b=2": false, "a=%20b": false, "a=1;b=2": true, "a=%2": true, "a=%zz": true,
		strings.Repeat("a&", 10000): true,
	} {
		if got := queryNeedsCleaning(q); got != want {
			t.Errorf("queryNeedsCleaning(%.20q) = %v, want %v", q, got, want)
		}
		// It must agree with url.ParseQuery's acceptance, which is what
		// ReverseProxy's re-encoding hinges on.
		if _, err := url.ParseQuery(q); err != nil && !want {
			t.Errorf("%.20q does not parse but would pass unchanged", q)
		}
	}
}

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream": true, "Text/Event-Stream; charset=utf-8": true, "text/event-streamx": false,
		"text/plain": false, "": false,
	} {
		if got := isEventStream([]string{ct}); got != want {
			t.Errorf("isEventStream(%q) = %v, want %v", ct, got, want)
		}
	}
}
