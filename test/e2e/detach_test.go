package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpDetached: 'weft up -d' returns once the mesh is ready, leaving it
// running in the background for the other commands.
func TestUpDetached(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(f, []byte(strings.ReplaceAll(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        command: ["WORKLOAD", "http"]
        ports: [{containerPort: 8080}]
`, "WORKLOAD", workloadBin)), 0o644)
	t.Cleanup(func() { runWeft(t, dir, "down") })
	dashboard := freeAddr(t)
	out, code := runWeft(t, dir, "up", "-d", "-f", f, "--control-addr", freeAddr(t), "--ratelimit-addr", freeAddr(t), "--dashboard-addr", dashboard)
	if code != 0 || !strings.Contains(out, "running in the background") {
		t.Fatalf("weft up -d: exit %d:\n%s", code, out)
	}
	m := &mesh{t: t, dir: dir}
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	web := replicas(st, "default", "web")
	// control, ratelimit, dashboard and web, all ready.
	if len(st.Components) != 4 || len(web) != 1 {
		t.Fatalf("weft up -d: want control, ratelimit, dashboard and one web replica: %+v", st.Components)
	}
	for _, c := range st.Components {
		if !c.Ready {
			t.Fatalf("weft up -d returned before %s was ready: %+v", c.Name, st.Components)
		}
	}
	if resp, err := httpClient.Get("http://" + dashboard + "/api/v1/info"); err != nil {
		t.Errorf("the dashboard does not answer at %s: %v", dashboard, err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("the dashboard's /api/v1/info at %s: %s", dashboard, resp.Status)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "weft-up.log"))
	if !strings.Contains(string(log), "mesh ready: 4 component(s) running") {
		t.Errorf("weft up did not announce the ready mesh:\n%s", log)
	}
	if _, err := get("http://" + web[0].Addresses["app:8080"] + "/"); err != nil {
		t.Fatalf("the detached mesh's workload does not answer: %v", err)
	}
	if out, code := runWeft(t, dir, "down"); code != 0 || !strings.Contains(out, "mesh stopped") {
		t.Fatalf("weft down: exit %d:\n%s", code, out)
	}
	if _, err := m.status(); err == nil {
		t.Fatal("weft status still finds a mesh after weft down")
	}
}
