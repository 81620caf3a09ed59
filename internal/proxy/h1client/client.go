// Package h1client is the proxy's HTTP/1.1 client for plain (cleartext)
// hops: outbound to unmeshed servers and inbound to the local app.
//
// net/http's Transport runs three goroutines per request (the caller, a
// read loop and a write loop per connection), so every request crosses
// goroutines twice, and its write loop flushes apart from the caller. A
// proxy has a goroutine per request already: Client writes the request
// and reads the response on it. Bodiless requests and small bodies of
// known length go out in one write; other bodies stream from a goroutine
// (as net/http's write loop does) while the response may already arrive.
//
// What net/http does better stays with it: requests Client does not take
// (upgrades, Expect: 100-continue, bodies of unknown length announced as
// empty, hosts needing IDNA) go to Client.Fallback.
package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Config configures a Client.
type Config struct {
	// ConnectTimeout bounds each TCP connect; zero means 1s.
	ConnectTimeout time.Duration
	// MaxIdlePerHost bounds the idle connections kept per address; zero
	// means 128.
	MaxIdlePerHost int
	// IdleTimeout closes connections idle this long; zero means 90s.
	IdleTimeout time.Duration
	// Fallback takes the requests Client leaves to net/http. Required.
	Fallback http.RoundTripper
}

// Client is a pooled HTTP/1.1 client (an http.RoundTripper) for cleartext
// upstreams. It is safe for concurrent use.
type Client struct {
	cfg    Config
	dialer net.Dialer

	mu   sync.Mutex
	idle map[string][]*conn // per address, most recently used last
}

var _ http.RoundTripper = (*Client)(nil)

// New returns a Client. It does no I/O.
func New(cfg Config) *Client {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = time.Second
	}
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 128
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	return &Client{
		cfg:    cfg,
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second},
		idle:   make(map[string][]*conn),
	}
}

// CloseIdleConnections closes the idle connections, the fallback's too.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	idle := c.idle
	c.idle = make(map[string][]*conn)
	c.mu.Unlock()
	for _, cs := range idle {
		for _, pc := range cs {
			pc.close()
		}
	}
	if ci, ok := c.cfg.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// conn is one upstream connection with its buffers.
type conn struct {
	c       *Client
	key     string
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	timer   *time.Timer // idle timeout, armed while pooled
	idle    bool        // in the pool (guarded by Client.mu)
	reused  bool        // served a request before this one
	closeFn func()      // pc.close, made once (a method value allocates)
}

func (pc *conn) close() { pc.nc.Close() }

// discard closes pc for good, and forgets its address when it has no
// idle connection left (endpoints come and go).
func (pc *conn) discard() {
	pc.nc.Close()
	c := pc.c
	c.mu.Lock()
	if cs, ok := c.idle[pc.key]; ok && len(cs) == 0 {
		delete(c.idle, pc.key)
	}
	c.mu.Unlock()
}

const bufSize = 4 << 10

// smallBody is the largest known-length body written with the headers,
// from the caller's goroutine.
const smallBody = 2 << 10

var (
	errClosedBody = errors.New("h1client: read on closed response body")
	errTooMany1xx = errors.New("h1client: too many 1xx responses")
	errBodyLength = errors.New("h1client: request body longer than its Content-Length")
)

// takes reports whether Client sends req itself.
func takes(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != "http" || req.ProtoMajor == 2 {
		return false
	}
	h := req.Header
	if len(h["Expect"]) > 0 || len(h["Upgrade"]) > 0 || httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return false
	}
	if req.ContentLength == 0 && req.Body != nil && req.Body != http.NoBody {
		return false // net/http probes such bodies
	}
	if te := req.TransferEncoding; len(te) > 0 && (len(te) > 1 || !isChunked(te) || req.ContentLength >= 0) {
		return false // codings other than chunked alone: net/http
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return false // IDNA
		}
	}
	return true
}

// RoundTrip sends req and returns the response; its body returns the
// connection to the pool at EOF.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if !takes(req) {
		return c.cfg.Fallback.RoundTrip(req)
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeReqBody(req)
		return nil, err
	}
	// A reused connection the server closed meanwhile fails the first
	// exchange; a request nothing of which reached it, or one safe to
	// repeat, is sent again on a fresh connection (as net/http does).
	for attempt := 0; ; attempt++ {
		pc, err := c.get(ctx, addrOf(req.URL), attempt > 0 || hasBody || !idempotent(req))
		if err != nil {
			closeReqBody(req)
			return nil, err
		}
		resp, sent, err := c.exchange(ctx, pc, req, hasBody)
		if err == nil {
			return resp, nil
		}
		if attempt == 0 && pc.reused && !sent && !hasBody && idempotent(req) && ctx.Err() == nil {
			continue
		}
		if hasBody {
			closeReqBody(req)
		}
		return nil, err
	}
}

// addrOf is the address to dial for u: its host, port 80 by default.
func addrOf(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "":
		return true
	}
	return len(req.Header["Idempotency-Key"]) > 0 || len(req.Header["X-Idempotency-Key"]) > 0
}

func closeReqBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// get takes an idle connection to addr, or dials one. probe: check a
// pooled connection is still open before using it (the request could not
// be sent again if it was not).
func (c *Client) get(ctx context.Context, addr string, probe bool) (*conn, error) {
	for {
		c.mu.Lock()
		cs := c.idle[addr]
		n := len(cs)
		if n == 0 {
			c.mu.Unlock()
			break
		}
		pc := cs[n-1]
		cs[n-1] = nil
		c.idle[addr] = cs[:n-1]
		pc.idle = false
		c.mu.Unlock()
		pc.timer.Stop()
		if probe && !alive(pc.nc) {
			pc.close()
			continue
		}
		pc.reused = true
		return pc, nil
	}
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pc := &conn{c: c, key: addr, nc: nc, br: bufio.NewReaderSize(nc, bufSize), bw: bufio.NewWriterSize(nc, bufSize)}
	pc.closeFn = pc.close
	return pc, nil
}

// put returns pc to the pool, or closes it when the pool is full.
func (c *Client) put(pc *conn) {
	if pc.br.Buffered() > 0 {
		pc.close() // bytes nobody asked for
		return
	}
	c.mu.Lock()
	cs := c.idle[pc.key]
	if len(cs) >= c.cfg.MaxIdlePerHost {
		c.mu.Unlock()
		pc.close()
		return
	}
	c.idle[pc.key] = append(cs, pc)
	pc.idle = true
	if pc.timer == nil {
		pc.timer = time.AfterFunc(c.cfg.IdleTimeout, pc.expire)
	} else {
		pc.timer.Reset(c.cfg.IdleTimeout)
	}
	c.mu.Unlock()
}

// expire closes pc if it is still idle when its timer fires.
func (pc *conn) expire() {
	c := pc.c
	c.mu.Lock()
	if !pc.idle {
		c.mu.Unlock()
		return
	}
	cs := c.idle[pc.key]
	for i, x := range cs {
		if x == pc {
			copy(cs[i:], cs[i+1:])
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(c.idle, pc.key)
	} else {
		c.idle[pc.key] = cs
	}
	pc.idle = false
	c.mu.Unlock()
	pc.close()
}

// exchange writes req on pc and reads the response head. sent reports
// whether the server may have seen any of the request: false only when
// nothing of the response came and the request can be sent again.
func (c *Client) exchange(ctx context.Context, pc *conn, req *http.Request, hasBody bool) (resp *http.Response, sent bool, err error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, pc.closeFn)
	}
	fail := func(err error) (*http.Response, bool, error) {
		pc.close()
		if stop != nil && !stop() {
			// The context ended: that is why the connection failed.
			return nil, true, context.Cause(ctx)
		}
		return nil, false, err // no response: RoundTrip decides on a retry
	}
	if err := writeHead(pc.bw, req); err != nil {
		return fail(err)
	}
	var wdone chan struct{}
	b := &body{pc: pc, ctx: ctx}
	switch {
	case !hasBody:
	case req.ContentLength > 0 && req.ContentLength <= smallBody && int64(pc.bw.Available()) >= req.ContentLength:
		buf := pc.bw.AvailableBuffer()[:req.ContentLength]
		if _, err := io.ReadFull(req.Body, buf); err != nil {
			return fail(fmt.Errorf("h1client: reading request body: %w", err))
		}
		if n, _ := io.Copy(io.Discard, req.Body); n > 0 {
			return fail(errBodyLength)
		}
		req.Body.Close()
		pc.bw.Write(buf)
	default:
		if err := pc.bw.Flush(); err != nil {
			return fail(err)
		}
		wdone = make(chan struct{})
		go func() {
			defer close(wdone)
			if err := writeBody(pc.bw, req); err != nil {
				b.werr = err
				pc.close() // the exchange is broken: unblock the reader
			}
		}()
	}
	if wdone == nil {
		if err := pc.bw.Flush(); err != nil {
			return fail(err)
		}
	}
	// Peek first: an error before the first byte of a response is one a
	// bodiless idempotent request may be retried after.
	_, err = pc.br.Peek(1)
	nothing := err != nil
	if err == nil {
		resp, err = readResponse(pc.br, req)
	}
	if err != nil {
		pc.discard()
		if wdone != nil {
			<-wdone
			if b.werr != nil {
				err = b.werr
			}
		}
		if stop != nil && !stop() {
			return nil, true, context.Cause(ctx)
		}
		// Nothing of a response arrived on a reused connection: the
		// server closed it while idle (or before reading this request).
		sent = wdone != nil || !nothing || !isEOFOrReset(err)
		return nil, sent, fmt.Errorf("h1client: reading response from %s: %w", pc.key, err)
	}
	reuse := !resp.Close && !wantsClose(req) && resp.StatusCode != http.StatusSwitchingProtocols &&
		(resp.Body == http.NoBody || resp.ContentLength >= 0 || isChunked(resp.TransferEncoding))
	b.stop, b.wdone, b.reuse = stop, wdone, reuse
	if resp.Body == http.NoBody {
		b.release(true)
		return resp, true, nil
	}
	b.rc = resp.Body
	resp.Body = b
	return resp, true, nil
}

// readResponse reads the response head, skipping 1xx informational
// responses other than 101 (as net/http does, at most 5).
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if n >= 5 {
			return nil, errTooMany1xx
		}
	}
}

func wantsClose(req *http.Request) bool {
	return req.Close || httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
}

func isChunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

func isEOFOrReset(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// excluded reports whether writeHead writes header k itself (or never).
func excluded(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// writeHead writes the request line and headers of req.
func writeHead(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h1client: invalid Host header %q", host)
	}
	method := req.Method
	if method == "" {
		method = "GET"
	}
	if !httpguts.ValidHeaderFieldName(method) { // a token, as net/http checks methods
		return fmt.Errorf("h1client: invalid method %q", method)
	}
	uri := req.URL.RequestURI()
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		if !httpguts.ValidHeaderFieldValue(ua[0]) {
			return errors.New("h1client: invalid User-Agent value")
		}
		bw.WriteString("User-Agent: ")
		bw.WriteString(textproto.TrimString(ua[0]))
		bw.WriteString("\r\n")
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		bw.WriteString("Connection: close\r\n")
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	switch {
	case hasBody && req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			first := true
			for k := range req.Trailer {
				if !httpguts.ValidHeaderFieldName(k) {
					return fmt.Errorf("h1client: invalid trailer name %q", k)
				}
				if !first {
					bw.WriteByte(',')
				}
				first = false
				bw.WriteString(http.CanonicalHeaderKey(k))
			}
			bw.WriteString("\r\n")
		}
	case hasBody:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	case req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		bw.WriteString("Content-Length: 0\r\n")
	}
	if err := writeHeader(bw, req.Header, true); err != nil {
		return err
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeHeader writes h's fields, validated as net/http validates them.
func writeHeader(bw *bufio.Writer, h http.Header, exclude bool) error {
	for k, vv := range h {
		if exclude && excluded(k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1client: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1client: invalid header field value for %q", k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	return nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeBody streams req's body: chunked (then trailers) when its length
// is unknown, else exactly ContentLength bytes. Each piece is flushed as
// it comes, so that a streaming client's upstream sees it at once.
func writeBody(bw *bufio.Writer, req *http.Request) error {
	defer req.Body.Close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	chunked := req.ContentLength < 0
	var left int64 = req.ContentLength
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 {
			if !chunked {
				if int64(n) > left {
					return errBodyLength
				}
				left -= int64(n)
				bw.Write(buf[:n])
			} else {
				bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(buf[:n])
				bw.WriteString("\r\n")
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("h1client: reading request body: %w", rerr)
		}
	}
	if !chunked {
		if left != 0 {
			return fmt.Errorf("h1client: request body shorter than its Content-Length (%d bytes missing)", left)
		}
		return bw.Flush()
	}
	bw.WriteString("0\r\n")
	if err := writeHeader(bw, req.Trailer, false); err != nil {
		return err
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// body is a response body that hands its connection back at EOF.
type body struct {
	rc    io.ReadCloser
	pc    *conn
	ctx   context.Context
	stop  func() bool   // stops closing pc when ctx ends; nil without
	wdone chan struct{} // closed when the request body is written; nil if sent with the head
	werr  error         // the request body writer's; read once wdone is closed
	reuse bool
	state atomic.Int32 // bodyReading, bodyEOF, bodyClosed
}

const (
	bodyReading = iota
	bodyEOF
	bodyClosed
)

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, errClosedBody
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
		return n, io.EOF
	}
	if err != nil {
		b.release(false)
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
	}
	return n, err
}

// Close closes the connection when the body was not read to its end
// (draining an unknown rest could take any time), as net/http does.
func (b *body) Close() error {
	b.release(false)
	return nil
}

// release ends the exchange once: at EOF the connection goes back to the
// pool if it can carry another request.
func (b *body) release(eof bool) {
	to := int32(bodyClosed)
	if eof {
		to = bodyEOF
	}
	if !b.state.CompareAndSwap(bodyReading, to) {
		if !eof {
			b.state.Store(bodyClosed)
		}
		return
	}
	pc := b.pc
	ok := eof && b.reuse
	if b.stop != nil && !b.stop() {
		ok = false // the context ended and closed the connection
	}
	if ok && b.wdone != nil {
		// The response is complete; the request body should be too. Give
		// the writer a moment (net/http waits 50ms too).
		select {
		case <-b.wdone:
		default:
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-b.wdone:
			case <-t.C:
			}
			t.Stop()
		}
		select {
		case <-b.wdone:
			ok = b.werr == nil
		default:
			ok = false
		}
	}
	if !ok {
		pc.discard()
		return
	}
	pc.c.put(pc)
}
