package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/local"
	localstore "github.com/weft-mesh/weft/internal/store/local"
)

// testPorts hands out the tests' fixed ports as the supervisor hands out
// replicas' ports: from below the ephemeral range, where no outgoing
// connection takes them before the process under test binds them.
var testPorts = local.NewPorts()

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testPorts.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// syncBuffer is a bytes.Buffer safe for the command's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestControlServesStateDir(t *testing.T) {
	dir := t.TempDir()
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"control", "--state-dir", dir, "--addr", addr, "--admin-addr", admin}, strings.NewReader(""), io.Discard, &errOut)
	}()

	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("control never became ready; stderr:\n%s", errOut.String())
		}
		<-tick.C
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	stream, err := pb.NewDestinationClient(cc).Get(sctx, &pb.GetDestination{Path: "smiley", ContextToken: `{"ns":"faces"}`})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := stream.Recv(); err != nil || u.GetNoEndpoints() == nil || u.GetNoEndpoints().Exists {
		t.Fatalf("first update = %v, %v; want no_endpoints{exists: false}", u, err)
	}

	// Another writer of the state directory (as 'weft apply' would be)
	// creates the Service; the open stream learns of it.
	st, err := localstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "faces", "smiley"
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	if err := st.Apply(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	if u, err := stream.Recv(); err != nil || u.GetNoEndpoints() == nil || !u.GetNoEndpoints().Exists {
		t.Fatalf("update after apply = %v, %v; want no_endpoints{exists: true}", u, err)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("weft control exited %d; stderr:\n%s", c, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("weft control did not stop after its context ended")
	}
}

func TestControlFlagErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown store", []string{"--store", "etcd"}, 2, `unknown --store "etcd"`},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"grpc port taken", []string{"--addr", busy.Addr().String(), "--admin-addr", "127.0.0.1:0"}, 1, "already in use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errOut bytes.Buffer
			args := append([]string{"control", "--state-dir", t.TempDir()}, tc.args...)
			c := Run(context.Background(), args, strings.NewReader(""), io.Discard, &errOut)
			if c != tc.code || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", c, errOut.String(), tc.code, tc.want)
			}
		})
	}
}
