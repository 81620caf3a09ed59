package stats

import (
	"sort"
	"strings"
)

// Edge is one caller -> callee pair of workloads, from the caller's
// outbound metrics.
type Edge struct {
	Src          string `json:"src"`
	SrcNamespace string `json:"srcNamespace"`
	Dst          string `json:"dst"`
	DstNamespace string `json:"dstNamespace"`
	// ClientID and ServerID are the mTLS identities seen on the edge, empty
	// until the proxies label their series with them.
	ClientID string `json:"clientId,omitempty"`
	ServerID string `json:"serverId,omitempty"`
	// Secured means every request of the edge went over mTLS.
	Secured bool `json:"secured"`
	Stats
}

type edgeKey struct{ srcNS, src, dstNS, dst string }

// Edges returns the edges between resources of kind (deployments or pods)
// with the caller or the callee in namespace ("" = all), sorted by source
// then destination.
func Edges(deltas []Delta, kind Kind, namespace string) []Edge {
	if kind != PodKind {
		kind = Deployment
	}
	type edgeAcc struct {
		acc
		tls, plain bool
		serverID   string
	}
	accs := map[edgeKey]*edgeAcc{}
	sa := map[rowKey]string{} // workload -> service account, for client ids
	for _, d := range deltas {
		sa[rowKey{d.Pod.Namespace, workloadOf(d.Pod, kind)}] = d.Pod.ServiceAccount
		for _, s := range d.Increase {
			if s.Labels["direction"] != "outbound" || (s.Name != "response_total" && s.Name != "response_latency_ms_bucket") {
				continue
			}
			k := edgeKey{srcNS: s.Labels["namespace"], src: s.Labels[srcLabel(kind)], dstNS: s.Labels["dst_namespace"], dst: s.Labels[dstLabel(kind)]}
			if k.src == "" || k.dst == "" {
				continue
			}
			if namespace != "" && k.srcNS != namespace && k.dstNS != namespace {
				continue
			}
			a := accs[k]
			if a == nil {
				a = &edgeAcc{}
				accs[k] = a
			}
			if s.Name == "response_latency_ms_bucket" {
				a.addBucket(s)
				continue
			}
			a.addResponse(s, d.Seconds)
			if s.Labels["tls"] == "true" {
				a.tls = true
			} else {
				a.plain = true
			}
			if id := s.Labels["server_id"]; id != "" {
				a.serverID = id
			}
		}
	}
	// Client identities come from the callee's inbound series: the one whose
	// identity names the caller's service account and namespace.
	clientIDs := map[edgeKey]string{}
	for _, d := range deltas {
		for _, s := range d.Increase {
			id := s.Labels["client_id"]
			if s.Name != "response_total" || s.Labels["direction"] != "inbound" || id == "" {
				continue
			}
			for k := range accs {
				if k.dstNS == s.Labels["namespace"] && k.dst == s.Labels[srcLabel(kind)] {
					if acct := sa[rowKey{k.srcNS, k.src}]; acct != "" && strings.HasPrefix(id, acct+"."+k.srcNS+".") {
						clientIDs[k] = id
					}
				}
			}
		}
	}
	out := make([]Edge, 0, len(accs))
	for k, a := range accs {
		out = append(out, Edge{
			Src: k.src, SrcNamespace: k.srcNS, Dst: k.dst, DstNamespace: k.dstNS,
			ClientID: clientIDs[k], ServerID: a.serverID,
			Secured: a.tls && !a.plain,
			Stats:   a.stats(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.SrcNamespace+"/"+a.Src != b.SrcNamespace+"/"+b.Src {
			return a.SrcNamespace+"/"+a.Src < b.SrcNamespace+"/"+b.Src
		}
		return a.DstNamespace+"/"+a.Dst < b.DstNamespace+"/"+b.Dst
	})
	return out
}

func workloadOf(p Pod, kind Kind) string {
	if kind == PodKind {
		return p.Name
	}
	return p.Deployment
}
