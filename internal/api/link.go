package api

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindLink connects this cluster to a remote one for service mirroring
// (multicluster.linkerd.io).
var KindLink = Kind{"multicluster.linkerd.io", "Link"}

func init() {
	register(&KindInfo{Kind: KindLink, Versions: []string{"v1alpha3", "v1alpha2", "v1alpha1"}, Plural: "links", Namespaced: true,
		New: func() Object { return &Link{} }, Validate: validateLink})
}

// Link describes a remote cluster: how to reach its API (credentials
// Secret), its gateway, and which of its Services to mirror.
type Link struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              LinkSpec    `json:"spec"`
	Status            *LinkStatus `json:"status,omitempty"`
}

// LinkSpec is the body of a Link. As in the CRD, ports and the probe's
// numbers are strings.
type LinkSpec struct {
	TargetClusterName             string `json:"targetClusterName,omitempty"`
	TargetClusterDomain           string `json:"targetClusterDomain,omitempty"`
	TargetClusterLinkerdNamespace string `json:"targetClusterLinkerdNamespace,omitempty"`
	ClusterCredentialsSecret      string `json:"clusterCredentialsSecret,omitempty"`
	// GatewayAddress is a comma-separated list of the remote gateway's
	// addresses; empty for a pod-to-pod (flat network) link.
	GatewayAddress  string    `json:"gatewayAddress,omitempty"`
	GatewayPort     string    `json:"gatewayPort,omitempty"`
	GatewayIdentity string    `json:"gatewayIdentity,omitempty"`
	ProbeSpec       ProbeSpec `json:"probeSpec,omitempty"`
	// Selector picks Services mirrored through the gateway;
	// RemoteDiscoverySelector those reached pod-to-pod;
	// FederatedServiceSelector the members of federated Services.
	Selector                 *metav1.LabelSelector `json:"selector,omitempty"`
	RemoteDiscoverySelector  *metav1.LabelSelector `json:"remoteDiscoverySelector,omitempty"`
	FederatedServiceSelector *metav1.LabelSelector `json:"federatedServiceSelector,omitempty"`
	ExcludedAnnotations      []string              `json:"excludedAnnotations,omitempty"`
	ExcludedLabels           []string              `json:"excludedLabels,omitempty"`
}

// ProbeSpec is how the remote gateway's health is probed. Empty fields take
// Linkerd's defaults (3 failures, 3s period, 30s timeout).
type ProbeSpec struct {
	FailureThreshold string `json:"failureThreshold,omitempty"`
	Path             string `json:"path,omitempty"`
	Period           string `json:"period,omitempty"`
	Port             string `json:"port,omitempty"`
	Timeout          string `json:"timeout,omitempty"`
}

// LinkStatus lists the Services the Link mirrors, with conditions.
type LinkStatus struct {
	MirrorServices    []LinkServiceStatus `json:"mirrorServices,omitempty"`
	FederatedServices []LinkServiceStatus `json:"federatedServices,omitempty"`
}

// LinkServiceStatus is the state of one mirrored Service.
type LinkServiceStatus struct {
	ControllerName string          `json:"controllerName,omitempty"`
	Conditions     []LinkCondition `json:"conditions,omitempty"`
}

// LinkCondition is one condition of a mirrored Service.
type LinkCondition struct {
	Type               string       `json:"type"`
	Status             string       `json:"status"`
	Reason             string       `json:"reason,omitempty"`
	Message            string       `json:"message,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	LocalRef           *TargetRef   `json:"localRef,omitempty"`
}

func validateLink(o Object) FieldErrors {
	l := o.(*Link)
	var errs FieldErrors
	s := l.Spec
	if s.TargetClusterName == "" {
		errs.Add("spec.targetClusterName", "required: the remote cluster's name")
	}
	if s.GatewayPort != "" {
		validatePortString("spec.gatewayPort", s.GatewayPort, &errs)
	}
	if s.GatewayAddress != "" && s.GatewayPort == "" {
		errs.Add("spec.gatewayPort", "required when gatewayAddress is set")
	}
	if p := s.ProbeSpec; p != (ProbeSpec{}) {
		if p.FailureThreshold != "" {
			if n, err := strconv.Atoi(p.FailureThreshold); err != nil || n < 1 {
				errs.Add("spec.probeSpec.failureThreshold", "invalid %q: want a positive integer in a string, such as \"3\"", p.FailureThreshold)
			}
		}
		if p.Port != "" {
			validatePortString("spec.probeSpec.port", p.Port, &errs)
		}
		if p.Path != "" && p.Path[0] != '/' {
			errs.Add("spec.probeSpec.path", "%q must start with /", p.Path)
		}
		for _, d := range []struct{ name, v string }{{"period", p.Period}, {"timeout", p.Timeout}} {
			if d.v != "" {
				if _, err := ParseDuration(d.v); err != nil {
					errs.Add("spec.probeSpec."+d.name, "%v", err)
				}
			}
		}
	}
	validateSelector("spec.selector", s.Selector, &errs)
	validateSelector("spec.remoteDiscoverySelector", s.RemoteDiscoverySelector, &errs)
	validateSelector("spec.federatedServiceSelector", s.FederatedServiceSelector, &errs)
	return errs
}

func validatePortString(path, s string, errs *FieldErrors) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		errs.Add(path, "invalid port %q: want a number from 1 to 65535 in a string, such as %q", s, fmt.Sprint(4143))
	}
}
