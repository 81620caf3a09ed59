package local

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// Labels and annotations the supervisor reads and writes.
const (
	LabelServiceName       = discoveryv1.LabelServiceName // kubernetes.io/service-name
	LabelManagedBy         = discoveryv1.LabelManagedBy   // endpointslice.kubernetes.io/managed-by
	ManagedBy              = "weft-supervisor"
	LabelPodTemplateHash   = "pod-template-hash"
	AnnotationManagedBy    = "weft.io/managed-by"
	AnnotationAdminAddr    = "weft.io/admin-addr"
	AnnotationTapAddr      = "weft.io/tap-addr" // the sidecar's io.linkerd.proxy.tap.Tap server
	AnnotationInboundPorts = "weft.io/inbound-ports"
	AnnotationProxyVersion = "linkerd.io/proxy-version"
)

// FormatInboundPorts encodes containerPort -> inbound proxy port as
// "8080=41235,9090=41236", the value of AnnotationInboundPorts. The slice
// controller reads it back, so slices depend only on what is in the store.
func FormatInboundPorts(m map[int32]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d=%d", k, m[int32(k)])
	}
	return strings.Join(parts, ",")
}

// ParseInboundPorts decodes FormatInboundPorts' output.
func ParseInboundPorts(s string) (map[int32]int, error) {
	m := map[int32]int{}
	if s == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		cp, err1 := strconv.ParseUint(k, 10, 16)
		ip, err2 := strconv.ParseUint(v, 10, 16)
		if !ok || err1 != nil || err2 != nil || cp == 0 || ip == 0 {
			return nil, fmt.Errorf("local: bad %s entry %q: want containerPort=inboundPort", AnnotationInboundPorts, part)
		}
		m[int32(cp)] = int(ip)
	}
	return m, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func selectorMatches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // a Service without a selector has manually managed endpoints
	}
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// resolveTargetPort returns the containerPort a Service port targets on pod:
// a named targetPort is looked up among the pod's container ports; an unset
// one means the Service port's own number.
func resolveTargetPort(sp corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	default:
		return sp.Port, true
	}
}

// DesiredSlices returns the EndpointSlices for services and the pods the
// supervisor runs. Because every pod is 127.0.0.1, each (Service, Pod) pair
// gets its own slice, whose ports are that pod's inbound proxy ports: the
// only thing that tells replicas apart.
func DesiredSlices(svcs []*corev1.Service, pods []*corev1.Pod) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, svc := range svcs {
		for _, pod := range pods {
			if pod.Namespace != svc.Namespace || pod.Annotations[AnnotationManagedBy] != ManagedBy || pod.DeletionTimestamp != nil {
				continue
			}
			if !selectorMatches(svc.Spec.Selector, pod.Labels) {
				continue
			}
			inbound, err := ParseInboundPorts(pod.Annotations[AnnotationInboundPorts])
			if err != nil {
				continue
			}
			var ports []discoveryv1.EndpointPort
			for _, sp := range svc.Spec.Ports {
				cp, ok := resolveTargetPort(sp, pod)
				if !ok {
					continue
				}
				ip, ok := inbound[cp]
				if !ok {
					continue // the pod does not declare that port, so no listener serves it
				}
				name := sp.Name
				proto := sp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				port := int32(ip)
				ports = append(ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port, AppProtocol: sp.AppProtocol})
			}
			if len(ports) == 0 {
				continue
			}
			ready := podReady(pod)
			s := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
			s.ObjectMeta = metav1.ObjectMeta{
				Name:      svc.Name + "-" + pod.Name,
				Namespace: svc.Namespace,
				Labels: map[string]string{
					LabelServiceName: svc.Name,
					LabelManagedBy:   ManagedBy,
				},
			}
			s.AddressType = discoveryv1.AddressTypeIPv4
			s.Endpoints = []discoveryv1.Endpoint{{
				Addresses:  []string{"127.0.0.1"},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name},
			}}
			s.Ports = ports
			out = append(out, s)
		}
	}
	return out
}

// ReconcileSlices makes the store's supervisor-managed EndpointSlices match
// DesiredSlices for its Services and Pods, writing only what changed.
func ReconcileSlices(ctx context.Context, st store.Store) error {
	svcObjs, err := st.List(ctx, api.KindService, "")
	if err != nil {
		return fmt.Errorf("local: listing services: %w", err)
	}
	podObjs, err := st.List(ctx, api.KindPod, "")
	if err != nil {
		return fmt.Errorf("local: listing pods: %w", err)
	}
	sliceObjs, err := st.List(ctx, api.KindEndpointSlice, "")
	if err != nil {
		return fmt.Errorf("local: listing endpointslices: %w", err)
	}
	svcs := make([]*corev1.Service, 0, len(svcObjs))
	for _, o := range svcObjs {
		svcs = append(svcs, o.(*corev1.Service))
	}
	pods := make([]*corev1.Pod, 0, len(podObjs))
	for _, o := range podObjs {
		pods = append(pods, o.(*corev1.Pod))
	}
	have := map[api.Ref]*discoveryv1.EndpointSlice{}
	for _, o := range sliceObjs {
		s := o.(*discoveryv1.EndpointSlice)
		if s.Labels[LabelManagedBy] == ManagedBy {
			have[api.RefOf(s)] = s
		}
	}
	var apply []api.Object
	for _, s := range DesiredSlices(svcs, pods) {
		ref := api.RefOf(s)
		if old, ok := have[ref]; !ok || !sameSlice(old, s) {
			apply = append(apply, s)
		}
		delete(have, ref)
	}
	if len(apply) > 0 {
		if err := st.Apply(ctx, apply...); err != nil {
			return fmt.Errorf("local: writing endpointslices: %w", err)
		}
	}
	if len(have) > 0 {
		refs := make([]api.Ref, 0, len(have))
		for ref := range have {
			refs = append(refs, ref)
		}
		if err := st.Delete(ctx, refs...); err != nil {
			return fmt.Errorf("local: deleting endpointslices: %w", err)
		}
	}
	return nil
}

func sameSlice(a, b *discoveryv1.EndpointSlice) bool {
	return reflect.DeepEqual(a.Labels, b.Labels) && a.AddressType == b.AddressType &&
		reflect.DeepEqual(a.Endpoints, b.Endpoints) && reflect.DeepEqual(a.Ports, b.Ports)
}
