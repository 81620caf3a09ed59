package cli

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedWriter collects a command's log output for the test to read.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

var servingAddr = regexp.MustCompile(`msg=serving .*addr=(127\.0\.0\.1:\d+)`)

func TestFacesCommandServes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // in the main handler's reply
	}{
		{"role argument", []string{"faces", "smiley", "--addr", "127.0.0.1:0"}, map[string]string{"SMILEY": "HeartEyes"}, `"smiley":"&#x1F60D;"`},
		{"role from FACES_SERVICE, port from PORT", []string{"faces"}, map[string]string{"FACES_SERVICE": "color", "PORT": "0", "COLOR": "green"}, `"color":"#228833"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logs lockedWriter
			code := make(chan int, 1)
			go func() { code <- Run(ctx, tt.args, strings.NewReader(""), io.Discard, &logs) }()

			var addr string
			deadline := time.Now().Add(10 * time.Second)
			for addr == "" {
				if m := servingAddr.FindStringSubmatch(logs.String()); m != nil {
					addr = m[1]
					break
				}
				select {
				case c := <-code:
					t.Fatalf("command exited %d before serving: %s", c, logs.String())
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("no serving line in %q", logs.String())
				}
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
				t.Errorf("GET / = %d %s, want %s", resp.StatusCode, body, tt.want)
			}
			cancel()
			if c := <-code; c != 0 {
				t.Errorf("exit code %d after shutdown, want 0; logs: %s", c, logs.String())
			}
		})
	}
}

func TestFacesCommandErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		wantErr string
	}{
		{"no role", []string{"faces"}, nil, 2, "no role given"},
		{"unknown role", []string{"faces", "load"}, nil, 2, `unknown role "load"`},
		{"bad PORT", []string{"faces", "smiley"}, map[string]string{"PORT": "http"}, 2, `$PORT "http" is not a port number`},
		{"too many args", []string{"faces", "smiley", "color"}, nil, 1, "accepts at most 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FACES_SERVICE", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var errOut lockedWriter
			code := Run(context.Background(), tt.args, strings.NewReader(""), io.Discard, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("Run(%q) = %d, %q; want %d and %q", tt.args, code, errOut.String(), tt.code, tt.wantErr)
			}
		})
	}
}
