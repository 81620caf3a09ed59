package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/demo/faces"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/ratelimit"
)

// demoListenerPort is the Emissary Listener port of the Faces manifests; the
// GUI is served there unless --ingress-port-map moves it.
const demoListenerPort = 8080

func newCmdDemo(g *Globals) *cobra.Command {
	var print bool
	cmd := newCmdUp(g)
	cmd.Use = "demo"
	cmd.Short = "Run the Faces demo application on the local mesh"
	cmd.Long = `Run the Faces demo on a local mesh: the faces-gui, face, smiley and color
workloads in namespace "faces", each with its sidecar proxy, behind the
ingress, in the state the Linkerd/Emissary resilience workshop starts from:
face fails about 21% of requests, smiley and color fail and are sometimes
slow. Open the printed URL to watch it; make it better with retries,
timeouts and rate limits ('weft apply -f').

'weft demo' is 'weft up' with built-in manifests equivalent to the Faces
Helm chart 1.4.1 and the workshop's Emissary Listeners, Host and Mappings.
It also puts the workshop's rate limit rule (domain emissary, mykey=myvalue,
8 requests per second) in STATE_DIR/ratelimit/, ready for the workshop's
last step, and prints the dashboard's URL beside the GUI's.
'weft demo --print' writes those manifests to stdout so you can edit them
and run 'weft up -f' instead. Every 'weft up' flag works here too.`
	cmd.Example = `  weft demo
  weft demo -d && weft status
  weft demo --print > faces.yaml`
	up := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if print {
			_, err := g.Out.Write(faces.Manifests())
			return err
		}
		dir, err := stateDirAbs(g)
		if err != nil {
			return err
		}
		path, err := writeDemoManifests(dir)
		if err != nil {
			return err
		}
		if addr, _ := cmd.Flags().GetString("ratelimit-addr"); addr != "" {
			if err := writeWorkshopRateLimit(dir); err != nil {
				return err
			}
		}
		if err := cmd.Flags().Set("filename", path); err != nil {
			return err
		}
		url, err := demoURL(cmd)
		if err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		dashboard := ""
		if addr, _ := cmd.Flags().GetString("dashboard-addr"); addr != "" {
			dashboard = "http://" + addr + "/"
		}
		detached, _ := cmd.Flags().GetBool("detach")
		if detached {
			if err := up(cmd, args); err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "Faces is running: open %s%s\nStop it with 'weft down'.\n", url, dashboardLine(dashboard))
			return nil
		}
		ctx, cancel := context.WithCancel(cmd.Context())
		defer cancel()
		go announceWhenReady(ctx, g, url, dashboard, time.Now())
		return up(cmd, args)
	}
	cmd.Flags().BoolVar(&print, "print", false, "print the demo's manifests to stdout and exit")
	return cmd
}

// writeDemoManifests stores the built-in manifests in the state directory,
// so that 'weft up' applies them like any -f file and a user can see what
// was applied.
func writeDemoManifests(dir string) (string, error) {
	demoDir := filepath.Join(dir, "demo")
	if err := os.MkdirAll(demoDir, 0o700); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	path := filepath.Join(demoDir, "faces.yaml")
	if err := os.WriteFile(path, faces.Manifests(), 0o600); err != nil {
		return "", fmt.Errorf("demo: writing %s: %w", path, err)
	}
	return path, nil
}

// writeWorkshopRateLimit puts the workshop's rate limit rule (domain
// emissary, mykey=myvalue, 8 requests per second) in the rate limit
// service's configuration directory, so that the workshop's last step
// (applying the rate-limited face Mapping and its RateLimitService) works
// on the demo as it is.
func writeWorkshopRateLimit(dir string) error {
	rlDir := RateLimitConfigDir(dir)
	if err := os.MkdirAll(rlDir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	path := filepath.Join(rlDir, "workshop.yaml")
	if err := os.WriteFile(path, ratelimit.WorkshopConfig(), 0o644); err != nil {
		return fmt.Errorf("demo: writing %s: %w", path, err)
	}
	return nil
}

// dashboardLine is the sentence naming the dashboard, if one is served.
func dashboardLine(url string) string {
	if url == "" {
		return ""
	}
	return "\nDashboard (golden metrics, topology, tap): " + url
}

// demoURL is where the GUI will be: the Listener's port, or where
// --ingress-port-map moved it.
func demoURL(cmd *cobra.Command) (string, error) {
	port := demoListenerPort
	maps, _ := cmd.Flags().GetStringArray("ingress-port-map")
	for _, m := range maps {
		l, p, err := ingress.ParsePortMap(m)
		if err != nil {
			return "", fmt.Errorf("demo: --ingress-port-map: %w", err)
		}
		if int(l) == demoListenerPort {
			if p == 0 {
				return "", fmt.Errorf("demo: --ingress-port-map %s: give the GUI a fixed port, not 0", m)
			}
			port = p
		}
	}
	return fmt.Sprintf("http://127.0.0.1:%d/faces/", port), nil
}

// announceWhenReady prints the GUI's URL once the page answers through the
// ingress, so the user opens it when there is something to see.
func announceWhenReady(ctx context.Context, g *Globals, url, dashboard string, start time.Time) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			took := time.Since(start).Round(100 * time.Millisecond)
			fmt.Fprintf(g.Out, "\nFaces is ready after %s: open %s%s\n%s\nStop it with Ctrl-C or 'weft down'.\n\n",
				took, url, dashboardLine(dashboard), strings.Repeat("-", 60))
			return
		}
	}
}
