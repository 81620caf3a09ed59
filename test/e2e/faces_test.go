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
}
