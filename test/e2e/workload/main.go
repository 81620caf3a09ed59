// Command workload is the test application the end-to-end tests run inside
// a local mesh. It knows nothing of the mesh: it listens on $PORT and makes
// its outbound calls through $HTTP_PROXY / $HTTPS_PROXY like any app.
//
//	workload http   serves GET / (who am I), /call?url=U (GET U, return its
//	                body) and /grpc?target=HOST:PORT (one gRPC health check)
//	workload grpc   serves grpc.health.v1.Health, naming its pod in the
//	                "x-pod" response header
//
// It listens on $LISTEN_PORT if set, else $PORT.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Reply is what GET / and /grpc answer.
type Reply struct {
	Pod string `json:"pod"`
	Msg string `json:"msg,omitempty"`
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: workload http|grpc")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// LISTEN_PORT, when set, wins over PORT: manifests often name the port
	// in an env var of their own, which the supervisor rewrites.
	port := os.Getenv("PORT")
	if p := os.Getenv("LISTEN_PORT"); p != "" {
		port = p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	log.Info("listening", "mode", os.Args[1], "addr", ln.Addr().String(), "pod", os.Getenv("POD_NAME"))
	switch os.Args[1] {
	case "http":
		err = serveHTTP(ctx, ln)
	case "grpc":
		err = serveGRPC(ctx, ln)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
	log.Info("stopped gracefully")
}

func serveHTTP(ctx context.Context, ln net.Listener) error {
	client := &http.Client{Timeout: 10 * time.Second} // default transport: proxy from the environment
	var conns sync.Map                                // target -> *grpc.ClientConn
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(Reply{Pod: os.Getenv("POD_NAME"), Msg: os.Getenv("MSG")})
	})
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("GET /grpc", func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("target")
		c, ok := conns.Load(target)
		if !ok {
			// grpc-go takes HTTPS_PROXY from the environment and tunnels
			// with CONNECT; the target name is resolved by the proxy.
			cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			c, _ = conns.LoadOrStore(target, cc)
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var md metadata.MD
		_, err := grpc_health_v1.NewHealthClient(c.(*grpc.ClientConn)).Check(ctx, &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&md))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		pod := ""
		if v := md.Get("x-pod"); len(v) > 0 {
			pod = v[0]
		}
		json.NewEncoder(w).Encode(Reply{Pod: pod})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

type health struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (health) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("x-pod", os.Getenv("POD_NAME")))
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func serveGRPC(ctx context.Context, ln net.Listener) error {
	srv := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, health{})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	srv.GracefulStop()
	return nil
}
