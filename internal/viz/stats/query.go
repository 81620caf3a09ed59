package stats

import (
	"fmt"
	"sort"
	"strings"
)

// Kind is a resource type viz reports on.
type Kind string

// The resource types of 'weft viz stat'.
const (
	Deployment Kind = "deployment"
	PodKind    Kind = "pod"
	Namespace  Kind = "namespace"
	Authority  Kind = "authority"
)

// ParseKind accepts the kubectl-style spellings: deploy, deployment(s), po,
// pod(s), ns, namespace(s), au, authority, authorities.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "deploy", "deployment", "deployments":
		return Deployment, nil
	case "po", "pod", "pods":
		return PodKind, nil
	case "ns", "namespace", "namespaces":
		return Namespace, nil
	case "au", "authority", "authorities":
		return Authority, nil
	}
	return "", fmt.Errorf("viz: unknown resource type %q (want deploy, po, ns or au)", s)
}

// Ref names one resource: kind, namespace (unused for namespaces) and name.
type Ref struct {
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ParseRef parses TYPE/NAME (deploy/web, po/web-abc, ns/faces, au/web:80)
// with ns as the namespace.
func ParseRef(s, ns string) (Ref, error) {
	t, name, ok := strings.Cut(s, "/")
	if !ok || name == "" {
		return Ref{}, fmt.Errorf("viz: resource %q: want TYPE/NAME such as deploy/web", s)
	}
	k, err := ParseKind(t)
	if err != nil {
		return Ref{}, err
	}
	r := Ref{Kind: k, Namespace: ns, Name: name}
	if k == Namespace {
		r.Namespace = ""
	}
	return r, nil
}

func (r Ref) String() string {
	short := map[Kind]string{Deployment: "deploy", PodKind: "po", Namespace: "ns", Authority: "au"}[r.Kind]
	return short + "/" + r.Name
}

// srcLabel is the label naming the proxy's own resource of kind k.
func srcLabel(k Kind) string {
	switch k {
	case Deployment:
		return "deployment"
	case PodKind:
		return "pod"
	case Namespace:
		return "namespace"
	}
	return "authority"
}

// dstLabel is the label naming an outbound request's destination resource.
func dstLabel(k Kind) string {
	switch k {
	case Deployment:
		return "dst_deployment"
	case PodKind:
		return "dst_pod"
	case Namespace:
		return "dst_namespace"
	}
	return "authority"
}

// Query selects the rows of 'weft viz stat'.
type Query struct {
	Kind Kind `json:"kind"`
	// Name limits the rows to one resource.
	Name string `json:"name,omitempty"`
	// Namespace limits the rows to one namespace; "" means all.
	Namespace string `json:"namespace,omitempty"`
	// From shows only traffic sent by this resource (its outbound view).
	From *Ref `json:"from,omitempty"`
	// To shows only traffic sent to this resource (the callers' outbound view).
	To *Ref `json:"to,omitempty"`
}

// Row is one line of 'weft viz stat'.
type Row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Status is the pod phase, for pods.
	Status string `json:"status,omitempty"`
	// MeshedPods/TotalPods are the MESHED column; both zero for authorities.
	MeshedPods int `json:"meshedPods"`
	TotalPods  int `json:"totalPods"`
	Stats
}

type rowKey struct{ ns, name string }

// keyFn maps a series of a proxy to its row, or reports it does not belong
// to the query.
type keyFn func(p Pod, labels map[string]string) (rowKey, bool)

// selector returns the direction to read and the row of each series.
func (q Query) selector() (direction string, key keyFn) {
	nsOK := func(ns string) bool { return q.Namespace == "" || q.Kind == Namespace || ns == q.Namespace }
	nameOK := func(n string) bool { return q.Name == "" || n == q.Name }
	switch {
	case q.From != nil:
		from := *q.From
		return "outbound", func(p Pod, l map[string]string) (rowKey, bool) {
			if l[srcLabel(from.Kind)] != from.Name || (from.Kind != Namespace && from.Kind != Authority && l["namespace"] != from.Namespace) {
				return rowKey{}, false
			}
			k := rowKey{ns: l["dst_namespace"], name: l[dstLabel(q.Kind)]}
			if q.Kind == Namespace {
				k.ns = ""
			}
			if q.Kind == Authority {
				k.ns = l["namespace"]
			}
			return k, k.name != "" && nsOK(k.ns) && nameOK(k.name)
		}
	case q.To != nil:
		to := *q.To
		return "outbound", func(p Pod, l map[string]string) (rowKey, bool) {
			if l[dstLabel(to.Kind)] != to.Name || (to.Kind != Namespace && to.Kind != Authority && l["dst_namespace"] != to.Namespace) {
				return rowKey{}, false
			}
			k := rowKey{ns: l["namespace"], name: l[srcLabel(q.Kind)]}
			if q.Kind == Namespace {
				k.ns = ""
			}
			return k, k.name != "" && nsOK(k.ns) && nameOK(k.name)
		}
	}
	return "inbound", func(p Pod, l map[string]string) (rowKey, bool) {
		k := rowKey{ns: l["namespace"], name: l[srcLabel(q.Kind)]}
		if q.Kind == Namespace {
			k.ns = ""
		}
		return k, k.name != "" && nsOK(l["namespace"]) && nameOK(k.name)
	}
}

// Stat computes the rows of q from each proxy's delta, with pods giving the
// MESHED column and the resources that had no traffic.
func Stat(deltas []Delta, pods []Pod, q Query) []Row {
	direction, key := q.selector()
	accs := map[rowKey]*acc{}
	get := func(k rowKey) *acc {
		a := accs[k]
		if a == nil {
			a = &acc{}
			accs[k] = a
		}
		return a
	}
	for _, d := range deltas {
		for _, s := range d.Increase {
			if s.Labels["direction"] != direction {
				continue
			}
			k, ok := key(d.Pod, s.Labels)
			if !ok {
				continue
			}
			switch s.Name {
			case "response_total":
				get(k).addResponse(s, d.Seconds)
			case "response_latency_ms_bucket":
				get(k).addBucket(s)
			case "tcp_read_bytes_total", "tcp_write_bytes_total":
				if q.From != nil || q.To != nil || d.Seconds <= 0 {
					continue // connections carry no destination labels
				}
				a := get(k)
				a.tcpSeen = true
				if s.Name == "tcp_read_bytes_total" {
					a.readBPS += s.Value / d.Seconds
				} else {
					a.writeBPS += s.Value / d.Seconds
				}
			}
		}
		if q.From != nil || q.To != nil {
			continue
		}
		for _, s := range d.Gauges {
			if s.Name != "tcp_open_connections" || s.Labels["direction"] != direction {
				continue
			}
			if k, ok := key(d.Pod, s.Labels); ok {
				a := get(k)
				a.tcpSeen = true
				a.tcpConn += s.Value
			}
		}
	}

	rows := map[rowKey]*Row{}
	row := func(k rowKey) *Row {
		r := rows[k]
		if r == nil {
			r = &Row{Namespace: k.ns, Name: k.name}
			rows[k] = r
		}
		return r
	}
	// Every pod-backed resource in scope gets a row, traffic or not, and its
	// MESHED count.
	if q.Kind != Authority {
		for _, p := range pods {
			var k rowKey
			switch q.Kind {
			case Deployment:
				if p.Deployment == "" {
					continue
				}
				k = rowKey{p.Namespace, p.Deployment}
			case PodKind:
				k = rowKey{p.Namespace, p.Name}
			case Namespace:
				k = rowKey{"", p.Namespace}
			}
			_, traffic := accs[k]
			inScope := q.From == nil && q.To == nil &&
				(q.Namespace == "" || q.Kind == Namespace || p.Namespace == q.Namespace) &&
				(q.Name == "" || q.Name == k.name)
			if !traffic && !inScope {
				continue
			}
			r := row(k)
			r.TotalPods++
			if p.Meshed {
				r.MeshedPods++
			}
			if q.Kind == PodKind {
				r.Status = p.Status
			}
		}
	}
	for k, a := range accs {
		row(k).Stats = a.stats()
	}
	out := make([]Row, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
