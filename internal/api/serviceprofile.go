package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
)

// KindServiceProfile is Linkerd's per-service route configuration.
var KindServiceProfile = Kind{"linkerd.io", "ServiceProfile"}

func init() {
	register(&KindInfo{Kind: KindServiceProfile, Versions: []string{"v1alpha2", "v1alpha1"}, Plural: "serviceprofiles", ShortNames: []string{"sp"}, Namespaced: true,
		New: func() Object { return &ServiceProfile{} }, Validate: validateServiceProfile})
}

// ServiceProfile names routes of a service and says which are retryable,
// their timeouts, and the retry budget. Its name is the service's FQDN
// ("smiley.faces.svc.cluster.local").
type ServiceProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServiceProfileSpec `json:"spec"`
}

// ServiceProfileSpec is the body of a ServiceProfile.
type ServiceProfileSpec struct {
	Routes       []RouteSpec    `json:"routes,omitempty"`
	RetryBudget  *RetryBudget   `json:"retryBudget,omitempty"`
	DstOverrides []*WeightedDst `json:"dstOverrides,omitempty"`
	OpaquePorts  []string       `json:"opaquePorts,omitempty"`
}

// RouteSpec is one named route: requests matching Condition.
type RouteSpec struct {
	Name            string           `json:"name"`
	Condition       *RequestMatch    `json:"condition"`
	ResponseClasses []*ResponseClass `json:"responseClasses,omitempty"`
	IsRetryable     bool             `json:"isRetryable,omitempty"`
	Timeout         string           `json:"timeout,omitempty"`
}

// RequestMatch is a tree of request predicates; exactly one field is set
// per node.
type RequestMatch struct {
	All       []*RequestMatch `json:"all,omitempty"`
	Not       *RequestMatch   `json:"not,omitempty"`
	Any       []*RequestMatch `json:"any,omitempty"`
	PathRegex string          `json:"pathRegex,omitempty"`
	Method    string          `json:"method,omitempty"`
}

// ResponseClass says which responses are failures.
type ResponseClass struct {
	Condition *ResponseMatch `json:"condition"`
	IsFailure bool           `json:"isFailure,omitempty"`
}

// ResponseMatch is a tree of response predicates.
type ResponseMatch struct {
	All    []*ResponseMatch `json:"all,omitempty"`
	Not    *ResponseMatch   `json:"not,omitempty"`
	Any    []*ResponseMatch `json:"any,omitempty"`
	Status *Range           `json:"status,omitempty"`
}

// Range is an inclusive status code range; zero bounds are open.
type Range struct {
	Min uint32 `json:"min,omitempty"`
	Max uint32 `json:"max,omitempty"`
}

// RetryBudget limits retries to a ratio of requests, with a floor.
type RetryBudget struct {
	RetryRatio          float32 `json:"retryRatio"`
	MinRetriesPerSecond uint32  `json:"minRetriesPerSecond"`
	TTL                 string  `json:"ttl"`
}

// WeightedDst is a traffic-split destination; Weight is a Kubernetes
// quantity in the CRD ("500m", "1"), kept as written. A number (weight: 1)
// is accepted too and kept as its decimal text.
type WeightedDst struct {
	Authority string `json:"authority"`
	Weight    string `json:"weight"`
}

// UnmarshalJSON decodes strictly (unknown and duplicate fields are errors)
// and accepts the weight as a number or a string, as the CRD does
// (x-kubernetes-int-or-string).
func (w *WeightedDst) UnmarshalJSON(b []byte) error {
	var aux struct {
		Authority string             `json:"authority"`
		Weight    intstr.IntOrString `json:"weight"`
	}
	strict, err := sigsjson.UnmarshalStrict(b, &aux, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return strict[0]
	}
	w.Authority = aux.Authority
	w.Weight = aux.Weight.String()
	return nil
}
