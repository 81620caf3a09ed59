package api

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestSlicePort(t *testing.T) {
	name := func(s string) *string { return &s }
	num := func(n int32) *int32 { return &n }
	es := &discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{
		{Name: name("http"), Port: num(8080)},
		{Name: name("grpc")}, // no number: "all ports"
		{Name: name("bad"), Port: num(70000)},
		{Port: num(9000)}, // unnamed
	}}
	for _, tc := range []struct {
		sp   corev1.ServicePort
		want uint16
		ok   bool
	}{
		{corev1.ServicePort{Name: "http", Port: 80}, 8080, true},
		{corev1.ServicePort{Name: "grpc", Port: 90, TargetPort: intstr.FromInt32(9090)}, 9090, true},
		{corev1.ServicePort{Name: "grpc", Port: 90, TargetPort: intstr.FromString("grpc")}, 90, true},
		{corev1.ServicePort{Name: "bad", Port: 91}, 0, false},
		{corev1.ServicePort{Port: 92}, 9000, true},
		{corev1.ServicePort{Name: "missing", Port: 93}, 0, false},
	} {
		got, ok := SlicePort(es, &tc.sp)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SlicePort(%s/%d) = %d, %v; want %d, %v", tc.sp.Name, tc.sp.Port, got, ok, tc.want, tc.ok)
		}
	}
}
