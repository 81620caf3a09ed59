package api

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// SlicePort is the port an EndpointSlice of a Service gives for one of the
// Service's ports, as Kubernetes maps them: the slice port of the same name
// (a Service port without a name matches the slice port without one). A
// slice port with no number means "all ports" in discovery/v1, so the
// Service port's numeric targetPort applies, else its port. ok is false when the slice has no such port or
// its number is out of range. Destination and the ingress both resolve
// endpoints with it, so a Service reaches the same pods through either.
func SlicePort(es *discoveryv1.EndpointSlice, sp *corev1.ServicePort) (port uint16, ok bool) {
	for _, p := range es.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != sp.Name {
			continue
		}
		if p.Port != nil {
			if *p.Port <= 0 || *p.Port > 65535 {
				return 0, false
			}
			return uint16(*p.Port), true
		}
		if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal > 0 && sp.TargetPort.IntVal <= 65535 {
			return uint16(sp.TargetPort.IntVal), true
		}
		return uint16(sp.Port), true
	}
	return 0, false
}
