package ingress

import (
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/weft-mesh/weft/internal/api"
)

// The Faces demo's manifests are the first thing users route with; check
// that they build cleanly and route as the demo expects.
func TestFacesDemoManifests(t *testing.T) {
	f, err := os.Open("../demo/faces/assets/manifests.yaml")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("demo manifests not present")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := api.Decode(f, "manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ls []*api.Listener
	var hs []*api.Host
	var ms []*api.Mapping
	for _, o := range objs {
		switch o := o.(type) {
		case *api.Listener:
			ls = append(ls, o)
		case *api.Host:
			hs = append(hs, o)
		case *api.Mapping:
			ms = append(ms, o)
		}
	}
	tbl := Build(ls, hs, ms, BuildOptions{Namespace: "weft"})
	if len(tbl.Problems) > 0 {
		t.Fatalf("problems: %v", tbl.Problems)
	}
	if len(tbl.Listeners()) == 0 {
		t.Fatal("no listeners")
	}
	for _, tc := range []struct {
		target, upstream, path string
	}{
		{"/faces/", "faces-gui.faces.svc.cluster.local:80", "/"},
		{"/faces/index.html", "faces-gui.faces.svc.cluster.local:80", "/index.html"},
		{"/face/center/?row=1", "face.faces.svc.cluster.local:80", "/center/"},
	} {
		req := httptest.NewRequest("GET", "http://localhost:8080"+tc.target, nil)
		d, ok := tbl.Match(8080, req)
		if !ok {
			t.Errorf("%s: no route", tc.target)
			continue
		}
		path, _ := d.Route.RewritePath(req.URL.EscapedPath())
		if d.Route.Upstream() != tc.upstream || path != tc.path {
			t.Errorf("%s -> %s %s, want %s %s", tc.target, d.Route.Upstream(), path, tc.upstream, tc.path)
		}
	}
}
