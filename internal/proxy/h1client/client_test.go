package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordRT is a fallback that records what it was given.
type recordRT struct{ n atomic.Int32 }

func (r *recordRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return http.DefaultTransport.RoundTrip(req)
}

// server is an httptest server counting the connections it accepted.
type server struct {
	*httptest.Server
	conns atomic.Int32
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newClient(t *testing.T) (*Client, *recordRT) {
	fb := &recordRT{}
	c := New(Config{Fallback: fb})
	t.Cleanup(c.CloseIdleConnections)
	return c, fb
}

func do(t *testing.T, c *Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, b
}

func get(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestExchanges(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	cases := []struct {
		name      string
		handler   http.HandlerFunc
		req       func(url string) *http.Request
		n         int    // requests, one after the other
		wantBody  string // each response's body ("" checks nothing unless wantEmpty)
		wantEmpty bool
		wantConns int32
		check     func(t *testing.T, resp *http.Response)
	}{
		{
			name:      "keep-alive reuses one connection",
			handler:   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) },
			req:       func(u string) *http.Request { r, _ := http.NewRequest("GET", u, nil); r.Host = "svc.test"; return r },
			n:         5,
			wantBody:  "hello svc.test",
			wantConns: 1,
		},
		{
			name: "Connection: close from the server",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				io.WriteString(w, "bye")
			},
			n:         3,
			wantBody:  "bye",
			wantConns: 3,
		},
		{
			name:      "Connection: close from the request",
			handler:   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strconv.FormatBool(r.Close)) },
			req:       func(u string) *http.Request { r, _ := http.NewRequest("GET", u, nil); r.Close = true; return r },
			n:         3,
			wantBody:  "true",
			wantConns: 3,
		},
		{
			name:    "Connection: close as a request header",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strconv.FormatBool(r.Close)) },
			req: func(u string) *http.Request {
				r, _ := http.NewRequest("GET", u, nil)
				r.Header.Set("Connection", "close")
				return r
			},
			n:         3,
			wantBody:  "true",
			wantConns: 3,
		},
		{
			name: "chunked response with trailers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Sum")
				io.WriteString(w, "part1,")
				w.(http.Flusher).Flush()
				io.WriteString(w, "part2")
				w.Header().Set("X-Sum", "42")
			},
			n:         3,
			wantBody:  "part1,part2",
			wantConns: 1,
			check: func(t *testing.T, resp *http.Response) {
				if got := resp.Trailer.Get("X-Sum"); got != "42" {
					t.Errorf("trailer X-Sum = %q, want 42", got)
				}
				if resp.ContentLength != -1 {
					t.Errorf("ContentLength = %d, want -1 (chunked)", resp.ContentLength)
				}
			},
		},
		{
			name:      "response larger than the buffers",
			handler:   func(w http.ResponseWriter, r *http.Request) { w.Write(big) },
			n:         2,
			wantBody:  string(big),
			wantConns: 1,
		},
		{
			name:    "HEAD has no body",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "1000") },
			req:     func(u string) *http.Request { r, _ := http.NewRequest("HEAD", u, nil); return r },
			n:       3, wantEmpty: true, wantConns: 1,
			check: func(t *testing.T, resp *http.Response) {
				if resp.ContentLength != 1000 {
					t.Errorf("ContentLength = %d, want 1000", resp.ContentLength)
				}
			},
		},
		{
			name:    "204 without body",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
			n:       3, wantEmpty: true, wantConns: 1,
		},
		{
			name: "304 without body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"x"`)
				w.WriteHeader(http.StatusNotModified)
			},
			n: 3, wantEmpty: true, wantConns: 1,
		},
		{
			name: "known-length request body, small",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%s %d %s", r.Method, r.ContentLength, b)
			},
			req: func(u string) *http.Request {
				r, _ := http.NewRequest("POST", u, strings.NewReader("payload"))
				return r
			},
			n: 3, wantBody: "POST 7 payload", wantConns: 1,
		},
		{
			name: "known-length request body, large",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%d %v", r.ContentLength, bytes.Equal(b, big))
			},
			req: func(u string) *http.Request {
				r, _ := http.NewRequest("PUT", u, bytes.NewReader(big))
				return r
			},
			n: 2, wantBody: fmt.Sprintf("%d true", len(big)), wantConns: 1,
		},
		{
			name: "chunked request body with trailers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%v %d %s %s", r.TransferEncoding, len(b), b[:5], r.Trailer.Get("X-Checksum"))
			},
			req: func(u string) *http.Request {
				pr, pw := io.Pipe()
				go func() {
					pw.Write([]byte("hello"))
					pw.Write(big)
					pw.Close()
				}()
				r, _ := http.NewRequest("POST", u, pr)
				r.ContentLength = -1
				r.Trailer = http.Header{"X-Checksum": nil}
				// Trailer values are set once the body is read, as a
				// server's request body does.
				r.Body = &trailerBody{ReadCloser: pr, tr: r.Trailer, key: "X-Checksum", val: "abc"}
				return r
			},
			n: 2, wantBody: fmt.Sprintf("[chunked] %d hello abc", len(big)+5), wantConns: 1,
		},
		{
			name: "POST without body sends Content-Length: 0",
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%d %q", r.ContentLength, r.Header.Get("Content-Length"))
			},
			req: func(u string) *http.Request { r, _ := http.NewRequest("POST", u, nil); return r },
			n:   2, wantBody: `0 "0"`, wantConns: 1,
		},
		{
			name: "headers, query and User-Agent kept",
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s|%s|%q|%s", r.URL.RequestURI(), r.Header.Values("X-Multi"), r.Header.Get("User-Agent"), r.Header.Get("X-Space"))
			},
			req: func(u string) *http.Request {
				r, _ := http.NewRequest("GET", u+"/a%20b?x=1&y=%2F", nil)
				r.Header["X-Multi"] = []string{"1", "2"}
				r.Header.Set("User-Agent", "curl/8")
				r.Header.Set("X-Space", "  v  ")
				return r
			},
			n: 1, wantBody: `/a%20b?x=1&y=%2F|[1 2]|"curl/8"|v`, wantConns: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.handler)
			c, fb := newClient(t)
			for i := 0; i < tc.n; i++ {
				req := get(t, s.URL)
				if tc.req != nil {
					req = tc.req(s.URL)
				}
				resp, body := do(t, c, req)
				if resp.StatusCode >= 400 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				if tc.wantBody != "" && string(body) != tc.wantBody {
					t.Fatalf("request %d: body %.80q, want %.80q", i, body, tc.wantBody)
				}
				if tc.wantEmpty && len(body) != 0 {
					t.Fatalf("request %d: body %q, want none", i, body)
				}
				if tc.check != nil {
					tc.check(t, resp)
				}
			}
			if got := s.conns.Load(); got != tc.wantConns {
				t.Errorf("server saw %d connections, want %d", got, tc.wantConns)
			}
			if n := fb.n.Load(); n != 0 {
				t.Errorf("%d requests went to the fallback", n)
			}
		})
	}
}

type trailerBody struct {
	io.ReadCloser
	tr       http.Header
	key, val string
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.tr.Set(b.key, b.val)
	}
	return n, err
}

func TestFallback(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cases := []struct {
		name string
		edit func(r *http.Request)
	}{
		{"upgrade", func(r *http.Request) { r.Header.Set("Connection", "Upgrade"); r.Header.Set("Upgrade", "websocket") }},
		{"expect 100-continue", func(r *http.Request) {
			r.Method = "POST"
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("x")), 1
			r.Header.Set("Expect", "100-continue")
		}},
		{"unknown body announced empty", func(r *http.Request) { r.Method = "POST"; r.Body = io.NopCloser(strings.NewReader("x")) }},
		{"HTTP/2 request", func(r *http.Request) { r.ProtoMajor = 2 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, fb := newClient(t)
			req := get(t, s.URL)
			tc.edit(req)
			resp, err := c.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if fb.n.Load() != 1 {
				t.Fatalf("fallback got %d requests, want 1", fb.n.Load())
			}
		})
	}
}

// TestChunkedFromServer: a chunked request as net/http's server hands it
// to the proxy (TransferEncoding ["chunked"], ContentLength -1) is sent by
// the client itself, chunked, not by the fallback.
func TestChunkedFromServer(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%v %d %s", r.TransferEncoding, r.ContentLength, b)
	})
	in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
		"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.TransferEncoding) != 1 || in.ContentLength != -1 {
		t.Fatalf("server-side request: TransferEncoding %v, ContentLength %d", in.TransferEncoding, in.ContentLength)
	}
	out := in.Clone(context.Background())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", strings.TrimPrefix(s.URL, "http://")
	c, fb := newClient(t)
	_, body := do(t, c, out)
	if fb.n.Load() != 0 || string(body) != "[chunked] -1 abcde" {
		t.Fatalf("fallback requests %d, body %q; want the client to send it chunked", fb.n.Load(), body)
	}
}

// rawServer accepts connections and runs serve on each.
func rawServer(t *testing.T, serve func(c net.Conn, n int)) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(accepted.Add(1))
			go func() {
				defer c.Close()
				serve(c, n)
			}()
		}
	}()
	return ln.Addr().String(), accepted
}

// TestServerClosesIdle: a server that closes each connection after one
// response, without saying so. The next request finds the pooled
// connection dead: bodiless idempotent requests are retried once on a
// fresh connection, others see the connection checked before they use it.
func TestServerClosesIdle(t *testing.T) {
	addr, accepted := rawServer(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		body := req.Method + string(b)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	for _, method := range []string{"GET", "POST", "DELETE"} {
		t.Run(method, func(t *testing.T) {
			c, _ := newClient(t)
			for i := 0; i < 3; i++ {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader("data")
				}
				req, _ := http.NewRequest(method, "http://"+addr, body)
				start := accepted.Load()
				// The server's close must have reached the client's
				// socket for the test to mean anything.
				waitClosedByPeer(t, c, addr)
				_, b := do(t, c, req)
				want := method
				if body != nil {
					want += "data"
				}
				if string(b) != want {
					t.Fatalf("body %q, want %q", b, want)
				}
				if got := accepted.Load() - start; got != 1 {
					t.Fatalf("request %d took %d new connections, want 1", i, got)
				}
			}
		})
	}
}

// waitClosedByPeer polls until every idle connection to addr reads EOF.
func waitClosedByPeer(t *testing.T, c *Client, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		dead := true
		for _, pc := range c.idle[addr] {
			if alive(pc.nc) {
				dead = false
			}
		}
		c.mu.Unlock()
		if dead {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's close never arrived")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNoRetryAfterResponseStarted: a failure after part of the response
// came is the caller's, never retried.
func TestNoRetryAfterResponseStarted(t *testing.T) {
	addr, accepted := rawServer(t, func(c net.Conn, n int) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// The second request on the connection gets half a head.
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 O")
	})
	c, _ := newClient(t)
	do(t, c, get(t, "http://"+addr))
	if _, err := c.RoundTrip(get(t, "http://"+addr)); err == nil {
		t.Fatal("a truncated response head succeeded")
	}
	if got := accepted.Load(); got != 1 {
		t.Fatalf("%d connections, want 1 (no retry)", got)
	}
}

func TestCancelMidBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c, _ := newClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	req := get(t, s.URL).WithContext(ctx)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not stop the body read")
	}
	resp.Body.Close()
	c.mu.Lock()
	n := len(c.idle[s.Listener.Addr().String()])
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d idle connections after a cancelled exchange, want 0", n)
	}
}

func TestCancelBeforeResponse(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c, _ := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.RoundTrip(get(t, s.URL).WithContext(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

// TestEarlyResponse: the server answers before reading the request body,
// which keeps streaming; the response still comes, and the connection is
// not reused.
func TestEarlyResponse(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	c, _ := newClient(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		chunk := make([]byte, 1024)
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequest("POST", s.URL, pr)
	req.ContentLength = -1
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestInformational(t *testing.T) {
	addr, _ := rawServer(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c, _ := newClient(t)
	for i := 0; i < 2; i++ {
		resp, b := do(t, c, get(t, "http://"+addr))
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, b)
		}
	}
}

func TestAddrOf(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://10.0.0.1:8080/x", "10.0.0.1:8080"},
		{"http://svc/x", "svc:80"},
		{"http://[::1]/", "[::1]:80"},
		{"http://[::1]:81/", "[::1]:81"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := addrOf(u); got != tc.want {
			t.Errorf("addrOf(%s) = %s, want %s", tc.url, got, tc.want)
		}
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := newClient(t)
	_, err = c.RoundTrip(get(t, "http://"+addr))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Fatalf("err = %v, want a dial *net.OpError", err)
	}
}

func TestIdleBoundAndTimeout(t *testing.T) {
	var wg sync.WaitGroup
	gate := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		wg.Done()
		<-gate
		io.WriteString(w, "ok")
	})
	c := New(Config{Fallback: http.DefaultTransport, MaxIdlePerHost: 2, IdleTimeout: 100 * time.Millisecond})
	defer c.CloseIdleConnections()
	const n = 4
	wg.Add(n)
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := c.RoundTrip(get(t, s.URL))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
	}
	wg.Wait() // all four on their own connections
	close(gate)
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	addr := s.Listener.Addr().String()
	idle := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.idle[addr])
	}
	if got := idle(); got != 2 {
		t.Fatalf("%d idle connections, want the bound, 2", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connections outlived their timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBodyClosedEarly: a body closed before its end closes the connection
// (its rest is never drained into the next exchange).
func TestBodyClosedEarly(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 256<<10))
	})
	c, _ := newClient(t)
	for i := 0; i < 2; i++ {
		resp, err := c.RoundTrip(get(t, s.URL))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(make([]byte, 10))
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, errClosedBody) {
			t.Fatalf("read after close: %v", err)
		}
	}
	if got := s.conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2", got)
	}
}

// FuzzWriteHead: whatever request head writeHead accepts, a server reads
// back the same method, target, Host and header values.
func FuzzWriteHead(f *testing.F) {
	f.Add("GET", "/a?b=c", "svc:80", "X-A", "v")
	f.Add("POST", "/%2F", "h", "Content-Type", "text/plain; a=b")
	f.Add("G\x00T", "/", "h", "X", "\r\nInjected: 1")
	f.Fuzz(func(t *testing.T, method, path, host, key, val string) {
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, nil)
		if err != nil || req.URL.Host != "127.0.0.1" {
			return
		}
		req.Host = host
		req.Header = http.Header{key: {val}}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := writeHead(bw, req); err != nil {
			return
		}
		bw.Flush()
		got, err := http.ReadRequest(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("server cannot read %q: %v", buf.String(), err)
		}
		if got.Method != req.Method || got.RequestURI != req.URL.RequestURI() || got.Host != host {
			t.Fatalf("read back %s %s %s, wrote %s %s %s", got.Method, got.RequestURI, got.Host, req.Method, req.URL.RequestURI(), host)
		}
		if excluded(key) || http.CanonicalHeaderKey(key) != key {
			return
		}
		if g := got.Header.Get(key); g != textproto.TrimString(val) {
			t.Fatalf("header %q read back %q, wrote %q", key, g, val)
		}
	})
}
