package api

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// KindTrafficSplit is SMI's weighted traffic split (split.smi-spec.io), as
// the linkerd-smi extension reads it.
var KindTrafficSplit = Kind{"split.smi-spec.io", "TrafficSplit"}

func init() {
	register(&KindInfo{Kind: KindTrafficSplit, Versions: []string{"v1alpha2", "v1alpha1"}, Plural: "trafficsplits", ShortNames: []string{"ts"}, Namespaced: true,
		New: func() Object { return &TrafficSplit{} }, Validate: validateTrafficSplit})
}

// TrafficSplit sends the traffic addressed to the apex Service to the
// backend Services in proportion to their weights.
type TrafficSplit struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TrafficSplitSpec `json:"spec"`
}

// TrafficSplitSpec is the body of a TrafficSplit.
type TrafficSplitSpec struct {
	// Service is the apex Service's name, in the TrafficSplit's namespace.
	Service  string                `json:"service"`
	Backends []TrafficSplitBackend `json:"backends"`
	// Matches (v1alpha2+) restricts the split to requests matching the
	// referenced route groups. Weft records but does not apply them.
	Matches []corev1.TypedLocalObjectReference `json:"matches,omitempty"`
}

// TrafficSplitBackend is one backend Service and its weight.
type TrafficSplitBackend struct {
	Service string `json:"service"`
	// Weight is an integer in v1alpha2 (50) and a quantity in v1alpha1
	// ("500m"); both forms are accepted. Use WeightMilli to compare.
	Weight *resource.Quantity `json:"weight"`
}

// WeightMilli returns the weight in thousandths, so that "500m" (v1alpha1)
// and 1 (v1alpha2) compare as 500 and 1000. A missing weight is 0.
func (b TrafficSplitBackend) WeightMilli() int64 {
	if b.Weight == nil {
		return 0
	}
	return b.Weight.MilliValue()
}

func validateTrafficSplit(o Object) FieldErrors {
	ts := o.(*TrafficSplit)
	var errs FieldErrors
	if ts.Spec.Service == "" {
		errs.Add("spec.service", "required: the apex Service's name")
	} else if msgs := validation.IsDNS1123Label(ts.Spec.Service); len(msgs) > 0 {
		errs.Add("spec.service", "invalid Service name %q: %s", ts.Spec.Service, msgs[0])
	}
	if len(ts.Spec.Backends) == 0 {
		errs.Add("spec.backends", "required: at least one backend")
	}
	var total int64
	seen := map[string]bool{}
	for i, b := range ts.Spec.Backends {
		p := fmt.Sprintf("spec.backends[%d]", i)
		if b.Service == "" {
			errs.Add(p+".service", "required")
		} else if msgs := validation.IsDNS1123Label(b.Service); len(msgs) > 0 {
			errs.Add(p+".service", "invalid Service name %q: %s", b.Service, msgs[0])
		} else if seen[b.Service] {
			errs.Add(p+".service", "duplicate backend %q", b.Service)
		}
		seen[b.Service] = true
		switch {
		case b.Weight == nil:
			errs.Add(p+".weight", "required")
		case b.Weight.Sign() < 0:
			errs.Add(p+".weight", "must not be negative")
		default:
			total += b.WeightMilli()
		}
	}
	if len(ts.Spec.Backends) > 0 && total == 0 && len(errs) == 0 {
		errs.Add("spec.backends", "every weight is zero; at least one backend must receive traffic")
	}
	return errs
}
