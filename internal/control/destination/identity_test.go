package destination

import (
	"testing"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/tlsid"
)

func withIdentity(w *pb.WeightedAddr, name string) *pb.WeightedAddr {
	w.TlsIdentity = &pb.TlsIdentity{
		Strategy:   &pb.TlsIdentity_DnsLikeIdentity_{DnsLikeIdentity: &pb.TlsIdentity_DnsLikeIdentity{Name: name}},
		ServerName: &pb.TlsIdentity_DnsLikeIdentity{Name: name},
	}
	return w
}

// TestGetTLSIdentity: with identity on, meshed endpoints carry the
// identity of their pod's service account (the "default" one when the pod
// names none) in the mesh's domain; unmeshed endpoints carry none.
func TestGetTLSIdentity(t *testing.T) {
	domain := tlsid.Domain{ControlNamespace: "linkerd", TrustDomain: "example.org"}
	h := newHarness(t, harnessOpts{identity: &domain})
	h.apply(t, smileyFixture()...)
	h.apply(t,
		service("faces", "face", svcPort{name: "http", port: 80, targetPort: intstr.FromInt32(8000)}),
		pod("faces", "face", "abc", "p1", "", true),
		endpointSlice("faces", "face", "face-abc-p1", "127.0.0.1", true, named("http", 41010)),
		service("faces", "plain", svcPort{name: "http", port: 80, targetPort: intstr.FromInt32(8000)}),
		pod("faces", "plain", "def", "p2", "plain", false),
		endpointSlice("faces", "plain", "plain-def-p2", "127.0.0.1", true, named("http", 41020)),
	)
	faceLabels := map[string]string{
		"namespace": "faces", "pod": "face-abc-p1", "serviceaccount": "default",
		"deployment": "face", "replicaset": "face-abc", "pod_template_hash": "abc",
	}
	plainLabels := map[string]string{
		"namespace": "faces", "pod": "plain-def-p2", "serviceaccount": "plain",
		"deployment": "plain", "replicaset": "plain-def", "pod_template_hash": "def",
	}
	tests := []struct {
		name, path string
		want       *pb.Update
	}{
		{"service account", "smiley.faces:80", wantAdd(smileySet,
			withIdentity(wantAddr("127.0.0.1:41001", smileyLabels, true), "smiley.faces.serviceaccount.identity.linkerd.example.org"))},
		{"default service account", "face.faces:80", wantAdd(map[string]string{"service": "face", "namespace": "faces"},
			withIdentity(wantAddr("127.0.0.1:41010", faceLabels, true), "default.faces.serviceaccount.identity.linkerd.example.org"))},
		{"unmeshed", "plain.faces:80", wantAdd(map[string]string{"service": "plain", "namespace": "faces"},
			wantAddr("127.0.0.1:41020", plainLabels, false))},
		{"pod IP:port", "127.0.0.1:41001", wantAdd(nil,
			withIdentity(wantAddr("127.0.0.1:41001", smileyLabels, true), "smiley.faces.serviceaccount.identity.linkerd.example.org"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.get(t, tc.path, "faces"), tc.want)
		})
	}
}

// TestGetNoIdentityWithoutDomain: a control plane without identity
// announces no tls_identity (proxies then speak plaintext).
func TestGetNoIdentityWithoutDomain(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	expect(t, h.get(t, "smiley.faces:80", ""), wantAdd(smileySet, wantAddr("127.0.0.1:41001", smileyLabels, true)))
}
