// Package api holds the resource kinds Weft reads, their registry, and the
// strict decoder that turns manifests into typed objects.
//
// Kinds from Kubernetes (Namespace, Service, Deployment, Pod, Secret,
// EndpointSlice) and Gateway API use their upstream Go types; kinds from
// Linkerd, Emissary, SMI and friends are defined here with the same JSON shape
// as their CRDs, so manifests from their documentation decode unchanged.
//
// Decode reads YAML or JSON manifests and reports every problem of every
// document (file, document, object, field path, reason); Encode prints
// objects as kubectl does. The Parse* functions read the Linkerd
// annotations (retries, timeouts, failure accrual, opaque ports) and the
// duration formats of Linkerd and Gateway API, so that every component
// interprets them the same way the decoder validated them.
package api

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is any resource Weft stores. Every kind embeds metav1.TypeMeta and
// metav1.ObjectMeta, which together satisfy it.
type Object interface {
	metav1.Object
	GetObjectKind() schema.ObjectKind
}

// Kind names a resource kind independently of its version. Group is "" for
// the core group (Service, Pod, ...).
type Kind struct {
	Group string
	Kind  string
}

// String returns "Kind" for the core group and "Kind.group" otherwise, the
// form kubectl prints.
func (k Kind) String() string {
	if k.Group == "" {
		return k.Kind
	}
	return k.Kind + "." + k.Group
}

// KindOf returns the Kind of an object from its TypeMeta.
func KindOf(o Object) Kind {
	gvk := o.GetObjectKind().GroupVersionKind()
	return Kind{Group: gvk.Group, Kind: gvk.Kind}
}

// Ref identifies one object.
type Ref struct {
	Kind      Kind
	Namespace string // "" for cluster-scoped kinds
	Name      string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind.String() + "/" + r.Name
	}
	return r.Kind.String() + "/" + r.Namespace + "/" + r.Name
}

// RefOf returns the Ref of an object.
func RefOf(o Object) Ref {
	return Ref{Kind: KindOf(o), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// KindInfo describes one registered kind.
type KindInfo struct {
	Kind
	// Versions lists the apiVersions' version parts accepted for this kind,
	// preferred (storage) version first.
	Versions []string
	// Plural is the lower-case plural resource name ("services").
	Plural string
	// ShortNames are extra names accepted on the command line ("svc").
	ShortNames []string
	// Namespaced is false for cluster-scoped kinds such as Namespace.
	Namespaced bool
	// New returns an empty object of this kind's Go type.
	New func() Object
	// Validate checks an object beyond what its Go type enforces. It returns
	// nil when the object is valid. May be nil.
	Validate func(Object) FieldErrors
}

// APIVersion returns the preferred group/version string, e.g. "apps/v1".
func (ki *KindInfo) APIVersion() string {
	if ki.Group == "" {
		return ki.Versions[0]
	}
	return ki.Group + "/" + ki.Versions[0]
}

var registry = map[Kind]*KindInfo{}

// register adds a kind; called only from package init.
func register(ki *KindInfo) {
	if _, dup := registry[ki.Kind]; dup {
		panic("api: kind registered twice: " + ki.Kind.String())
	}
	registry[ki.Kind] = ki
}

// Lookup returns the registered kind, or nil.
func Lookup(k Kind) *KindInfo { return registry[k] }

// Kinds returns every registered kind, sorted by name.
func Kinds() []*KindInfo {
	out := make([]*KindInfo, 0, len(registry))
	for _, ki := range registry {
		out = append(out, ki)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind.String() < out[j].Kind.String() })
	return out
}

// ResolveKind maps what a user typed on the command line ("svc", "services",
// "Deployment", "httproutes.gateway.networking.k8s.io",
// "deployments.v1.apps", "mapping") to a kind, case-insensitively. A bare
// name shared by several groups (HTTPRoute) resolves to the Gateway API
// group first, as kubectl does for its preferred group.
func ResolveKind(name string) (*KindInfo, error) {
	n := strings.ToLower(name)
	var matches []*KindInfo
	for _, ki := range Kinds() {
		if ki.matchesName(n) {
			matches = append(matches, ki)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("api: unknown resource type %q (see 'weft api-resources')", name)
	case 1:
		return matches[0], nil
	}
	for _, m := range matches {
		if m.Group == "gateway.networking.k8s.io" {
			return m, nil
		}
	}
	return matches[0], nil
}

// matchesName reports whether n (lower case) names this kind: its kind,
// plural or a short name, alone or followed by ".group" or
// ".version.group".
func (ki *KindInfo) matchesName(n string) bool {
	names := append([]string{strings.ToLower(ki.Kind.Kind), ki.Plural}, ki.ShortNames...)
	for _, cand := range names {
		if n == cand {
			return true
		}
		if ki.Group == "" {
			continue
		}
		rest, ok := strings.CutPrefix(n, cand+".")
		if !ok {
			continue
		}
		if rest == ki.Group {
			return true
		}
		if v, ok := strings.CutSuffix(rest, "."+ki.Group); ok && contains(ki.Versions, v) {
			return true
		}
	}
	return false
}

// FieldError is one problem at one field path of a document.
type FieldError struct {
	Path   string // e.g. "spec.routes[0].timeout"
	Reason string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// FieldErrors is a list of field problems; nil means valid.
type FieldErrors []FieldError

// Add appends a problem at path.
func (l *FieldErrors) Add(path, format string, args ...any) {
	*l = append(*l, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}
