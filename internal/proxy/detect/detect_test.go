package detect

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Protocol
	}{
		{"empty", "", Unknown},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP2},
		{"h2 decisive prefix", "PRI * HTTP/2.0", HTTP2},
		{"h2 partial", "PRI * HT", Unknown},
		{"get origin form", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP1},
		{"get absolute form", "GET http://smiley/center/ HTTP/1.1\r\n", HTTP1},
		{"connect", "CONNECT smiley.faces:80 HTTP/1.1\r\n", HTTP1},
		{"http/1.0 bare LF", "POST /x HTTP/1.0\n", HTTP1},
		{"PRI as HTTP/1 method", "PRI * HTTP/1.1\r\n", HTTP1},
		{"partial request line", "GET /center/ HTT", Unknown},
		{"partial method", "GE", Unknown},
		{"tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Opaque},
		{"redis", "*1\r\n$4\r\nPING\r\n", Opaque},
		{"http/2.0 request line", "GET / HTTP/2.0\r\n", Opaque},
		{"bad version prefix", "GET / HTTX", Opaque},
		{"two spaces", "GET  / HTTP/1.1\r\n", Opaque},
		{"ssh banner", "SSH-2.0-OpenSSH_9.6\r\n", Opaque},
		{"long URL", "GET /" + strings.Repeat("a", MaxPeek), HTTP1},
		{"long token", strings.Repeat("A", MaxPeek+1), Opaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify([]byte(tt.in)); got != tt.want {
				t.Errorf("Classify(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzClassify checks that Classify never panics, that its decisions are
// final (a decided prefix decides every extension the same way) and that it
// decides by MaxPeek bytes.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET / HTTP/1.1\r\n", "CONNECT a:1 HTTP/1.1\r\n", "\x16\x03\x01", "GE", "PRI * HTTP/1.1\r\n"} {
		f.Add([]byte(s), []byte("x\r\n"))
	}
	f.Fuzz(func(t *testing.T, b, ext []byte) {
		p := Classify(b)
		if len(b) >= MaxPeek && p == Unknown {
			t.Fatalf("Classify(%d bytes) = Unknown, want a decision", len(b))
		}
		if p == HTTP2 && !bytes.HasPrefix(b, []byte(preface)) {
			t.Fatalf("Classify(%q) = HTTP2 without the preface", b)
		}
		if p != Unknown {
			if q := Classify(append(bytes.Clone(b), ext...)); q != p {
				t.Fatalf("Classify(%q) = %v but Classify(%q + %q) = %v", b, p, b, ext, q)
			}
		}
	})
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		writes []string
		close  bool
		want   Protocol
	}{
		{"http1 in pieces", "", []string{"GET / ", "HTTP/1.1\r\nHost: a\r\n\r\n"}, false, HTTP1},
		{"h2 preface", "", []string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}, false, HTTP2},
		{"prefix decides", "GET / HTTP/1.1\r\n", nil, false, HTTP1},
		{"prefix then read", "PRI * ", []string{"HTTP/2.0\r\n\r\nSM\r\n\r\n"}, false, HTTP2},
		{"opaque", "", []string{"\x16\x03\x01\x00"}, false, Opaque},
		{"short then EOF", "", []string{"GE"}, true, Opaque},
		{"short then timeout", "", []string{"GE"}, false, Opaque},
		{"silence", "", nil, false, Opaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			go func() {
				for _, w := range tt.writes {
					client.Write([]byte(w))
				}
				if tt.close {
					client.Close()
				}
			}()
			p, c, err := Detect(server, []byte(tt.prefix), 200*time.Millisecond)
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if p != tt.want {
				t.Fatalf("Detect = %v, want %v", p, tt.want)
			}
			// Every byte read during detection is replayed.
			want := tt.prefix + strings.Join(tt.writes, "")
			got := make([]byte, len(want))
			go func() {
				if !tt.close {
					client.Close()
				}
			}()
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("reading replayed bytes: %v", err)
			}
			if string(got) != want {
				t.Errorf("replayed %q, want %q", got, want)
			}
		})
	}
}

func TestDetectEOF(t *testing.T) {
	client, server := tcpPair(t)
	client.Close()
	_, _, err := Detect(server, nil, time.Second)
	if err != ErrEOF {
		t.Fatalf("Detect on closed conn: err = %v, want ErrEOF", err)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
