package metrics

import "testing"

// BenchmarkTargetTLS is the per-request series lookup by (authority,
// endpoint labels, TLS labels) the outbound did before it kept each
// endpoint's series on its balancer node, and the recording that remains.
// Run: go test -run '^$' -bench 'Target' -benchmem ./internal/metrics/
func BenchmarkTargetTLS(b *testing.B) {
	h := NewProxy(NewRegistry()).HTTP(L("direction", "outbound", "namespace", "faces", "pod", "gui-5d8f-abcde", "deployment", "gui"))
	dst := L("dst_namespace", "faces", "dst_service", "smiley", "dst_pod", "smiley-7c9b-xyz12", "dst_deployment", "smiley", "dst_serviceaccount", "smiley")
	tls := TLSLabels("server_id", "smiley.faces.serviceaccount.identity.weft.cluster.local")
	const authority = "smiley.faces.svc.cluster.local:80"
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.TargetTLS(authority, dst, tls).Request()
		}
	})
	b.Run("record", func(b *testing.B) {
		t := h.TargetTLS(authority, dst, tls)
		b.ReportAllocs()
		for b.Loop() {
			t.Request()
			t.Latency(200, 1500000)
			t.Response(200, NoGRPCStatus)
		}
	})
}
