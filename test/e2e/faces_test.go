package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/demo/faces"
)

// TestFacesThroughIngress runs the Faces demo's own manifests: containers
// without a command whose images weft has built in, and Emissary Listeners
// and Mappings, which make the supervisor run the ingress as a meshed system
// workload. A request to the ingress reaches the services through the mesh.
func TestFacesThroughIngress(t *testing.T) {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	m := startMesh(t, string(faces.Manifests()), "--ingress-port-map", "8080="+port, "--ingress-port-map", "8443=0")
	st := m.waitSettled(t, "faces", map[string]int{"faces-gui": 1, "face": 1, "smiley": 1, "color": 1}, 60*time.Second)
	var ingress bool
	for _, c := range st.Components {
		ingress = ingress || (c.Kind == "ingress" && c.Namespace == "weft" && len(c.Processes) == 2)
	}
	if !ingress {
		t.Fatalf("no ingress workload (ingress + proxy) in weft status: %+v", st.Components)
	}
	out, _ := m.weft("status")
	if !strings.Contains(out, "ingress") || !strings.Contains(out, "listener:8080=127.0.0.1:"+port) {
		t.Errorf("weft status does not show the ingress and where it listens:\n%s", out)
	}

	if out, code := m.weft("logs", "ingress"); code != 0 || !strings.Contains(out, "listening") {
		t.Errorf("weft logs ingress: exit %d:\n%s", code, out)
	}

	// The face service calls smiley and color through its own sidecar;
	// the ingress reaches face through its sidecar.
	eventually(t, 30*time.Second, "a Faces reply through the ingress", func() error {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/face/", nil)
		req.Host = "faces.example.com"
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"smiley"`) {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})

	// The ingress's connection into the mesh is mTLS: its sidecar's
	// outbound reached face with face's identity, and face's inbound saw
	// the ingress's identity.
	var ingressAdmin, faceAdmin string
	for _, c := range st.Components {
		switch {
		case c.Kind == "ingress":
			ingressAdmin = c.Addresses["admin"]
		}
	}
	if face := replicas(st, "faces", "face"); len(face) > 0 {
		faceAdmin = face[0].Addresses["admin"]
	}
	if ingressAdmin == "" {
		t.Fatalf("no admin address for the ingress's sidecar: %+v", st.Components)
	}
	ingressID := "weft-ingress.weft.serviceaccount.identity.weft.cluster.local"
	out = grepMetric(proxyMetrics(t, ingressAdmin), "request_total", `direction="outbound"`)
	if !strings.Contains(out, `authority="face.faces.svc.cluster.local:80"`) || !strings.Contains(out, `tls="true",server_id="`) || strings.Contains(out, "no_tls_reason") {
		t.Errorf("the ingress's sidecar did not reach face over mTLS:\n%s", out)
	}
	if faceAdmin == "" {
		t.Fatalf("no admin address for face's sidecar: %+v", st.Components)
	}
	eventually(t, 10*time.Second, "face's inbound to count the ingress's mTLS requests", func() error {
		in := grepMetric(proxyMetrics(t, faceAdmin), "request_total", `client_id="`+ingressID+`"`)
		if in == "" {
			return fmt.Errorf("no inbound request from %s", ingressID)
		}
		return nil
	})
}
