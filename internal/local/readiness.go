package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeClient talks to local admin and app ports directly: never through a
// proxy from the supervisor's own environment, never reusing connections
// (a probe must see a process that restarted).
var probeClient = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// httpOK reports whether GET url answers 2xx or 3xx, as a Kubernetes httpGet
// probe counts success.
func httpOK(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// tcpOK reports whether addr accepts a TCP connection.
func tcpOK(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// probePort resolves a probe's port (number or containerPort name) to the
// local port the app listens on.
func probePort(p intstr.IntOrString, c *corev1.Container, local map[int32]int) (int, error) {
	var cp int32
	if p.Type == intstr.String {
		for _, port := range c.Ports {
			if port.Name == p.StrVal {
				cp = port.ContainerPort
			}
		}
		if cp == 0 {
			return 0, fmt.Errorf("local: container %q has no port named %q", c.Name, p.StrVal)
		}
	} else {
		cp = p.IntVal
	}
	if lp, ok := local[cp]; ok {
		return lp, nil
	}
	// A port the manifest does not declare keeps its number: the app was
	// not told another one.
	return int(cp), nil
}

// containerReady checks one container: its readinessProbe (httpGet or
// tcpSocket) when declared, else that each declared port accepts TCP.
func containerReady(ctx context.Context, c *corev1.Container, local map[int32]int) bool {
	if pr := c.ReadinessProbe; pr != nil {
		switch {
		case pr.HTTPGet != nil:
			port, err := probePort(pr.HTTPGet.Port, c, local)
			if err != nil {
				return false
			}
			scheme := "http"
			if pr.HTTPGet.Scheme == corev1.URISchemeHTTPS {
				scheme = "https"
			}
			path := pr.HTTPGet.Path
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			return httpOK(ctx, fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, path))
		case pr.TCPSocket != nil:
			port, err := probePort(pr.TCPSocket.Port, c, local)
			return err == nil && tcpOK(ctx, loopback(port))
		}
		// exec and grpc probes are not run in local mode; fall back to ports.
	}
	for _, p := range c.Ports {
		if lp, ok := local[p.ContainerPort]; ok && !tcpOK(ctx, loopback(lp)) {
			return false
		}
	}
	return true
}
