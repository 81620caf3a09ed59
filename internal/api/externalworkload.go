package api

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// KindExternalWorkload is a workload outside the cluster, such as a VM,
// that joins the mesh (workload.linkerd.io).
var KindExternalWorkload = Kind{"workload.linkerd.io", "ExternalWorkload"}

func init() {
	register(&KindInfo{Kind: KindExternalWorkload, Versions: []string{"v1beta1", "v1alpha1"}, Plural: "externalworkloads", Namespaced: true,
		New: func() Object { return &ExternalWorkload{} }, Validate: validateExternalWorkload})
}

// ExternalWorkload describes one workload outside the cluster: its mesh
// identity, address and ports. Services select it by its labels, as they
// select pods.
type ExternalWorkload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ExternalWorkloadSpec    `json:"spec"`
	Status            *ExternalWorkloadStatus `json:"status,omitempty"`
}

// ExternalWorkloadSpec is the body of an ExternalWorkload.
type ExternalWorkloadSpec struct {
	MeshTLS     MeshTLSIdentity `json:"meshTLS"`
	Ports       []WorkloadPort  `json:"ports,omitempty"`
	WorkloadIPs []WorkloadIP    `json:"workloadIPs,omitempty"`
}

// MeshTLSIdentity is the workload's mesh identity (a URI such as
// spiffe://root.linkerd.cluster.local/vm) and the server name (SNI) its
// proxy answers to.
type MeshTLSIdentity struct {
	Identity   string `json:"identity"`
	ServerName string `json:"serverName"`
}

// WorkloadPort is a port the workload serves. Protocol "" means TCP.
type WorkloadPort struct {
	Name     string          `json:"name,omitempty"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol,omitempty"`
}

// WorkloadIP is one address of the workload.
type WorkloadIP struct {
	IP string `json:"ip"`
}

// ExternalWorkloadStatus carries the workload's readiness.
type ExternalWorkloadStatus struct {
	Conditions []WorkloadCondition `json:"conditions,omitempty"`
}

// WorkloadCondition is one condition; Type "Ready" with Status "True"
// makes the workload's endpoints ready.
type WorkloadCondition struct {
	Type               string       `json:"type"`
	Status             string       `json:"status"`
	LastProbeTime      *metav1.Time `json:"lastProbeTime,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	Reason             string       `json:"reason,omitempty"`
	Message            string       `json:"message,omitempty"`
}

func validateExternalWorkload(o Object) FieldErrors {
	ew := o.(*ExternalWorkload)
	var errs FieldErrors
	s := ew.Spec
	switch id := s.MeshTLS.Identity; {
	case id == "":
		errs.Add("spec.meshTLS.identity", "required: a URI such as spiffe://root.linkerd.cluster.local/vm")
	case strings.ContainsAny(id, " \t\n"):
		errs.Add("spec.meshTLS.identity", "invalid identity %q: must not contain white space", id)
	}
	if sn := s.MeshTLS.ServerName; sn == "" {
		errs.Add("spec.meshTLS.serverName", "required: the name (SNI) the workload's proxy answers to")
	} else if msgs := validation.IsDNS1123Subdomain(sn); len(msgs) > 0 {
		errs.Add("spec.meshTLS.serverName", "invalid name %q: %s", sn, msgs[0])
	}
	switch n := len(s.WorkloadIPs); {
	case n == 0:
		errs.Add("spec.workloadIPs", "required: the workload's address")
	case n > 1:
		errs.Add("spec.workloadIPs", "at most one address is supported, got %d", n)
	}
	for i, ip := range s.WorkloadIPs {
		if _, err := netip.ParseAddr(ip.IP); err != nil {
			errs.Add(fmt.Sprintf("spec.workloadIPs[%d].ip", i), "invalid IP address %q", ip.IP)
		}
	}
	names := map[string]bool{}
	for i, p := range s.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		if p.Port < 1 || p.Port > 65535 {
			errs.Add(pp+".port", "%d is not a port number (1-65535)", p.Port)
		}
		switch p.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP:
		default:
			errs.Add(pp+".protocol", "unknown protocol %q; use TCP or UDP", p.Protocol)
		}
		if p.Name != "" {
			if msg := portNameProblem(p.Name); msg != "" {
				errs.Add(pp+".name", "invalid port name %q: %s", p.Name, msg)
			} else if names[p.Name] {
				errs.Add(pp+".name", "duplicate port name %q", p.Name)
			}
			names[p.Name] = true
		}
	}
	if st := ew.Status; st != nil {
		for i, c := range st.Conditions {
			switch c.Status {
			case "True", "False", "Unknown":
			default:
				errs.Add(fmt.Sprintf("status.conditions[%d].status", i), "unknown status %q; use True, False or Unknown", c.Status)
			}
		}
	}
	return errs
}
