package api

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Kinds Weft reads. Each file that defines a kind's Go type registers it in
// that file's init; the upstream kinds are registered here.
var (
	KindNamespace      = Kind{"", "Namespace"}
	KindService        = Kind{"", "Service"}
	KindPod            = Kind{"", "Pod"}
	KindSecret         = Kind{"", "Secret"}
	KindServiceAccount = Kind{"", "ServiceAccount"}
	KindDeployment     = Kind{"apps", "Deployment"}
	KindEndpointSlice  = Kind{"discovery.k8s.io", "EndpointSlice"}

	KindHTTPRoute = Kind{"gateway.networking.k8s.io", "HTTPRoute"}
	KindGRPCRoute = Kind{"gateway.networking.k8s.io", "GRPCRoute"}
	KindGateway   = Kind{"gateway.networking.k8s.io", "Gateway"}
	// KindGatewayClass is cluster-scoped: a class names the controller
	// that serves the Gateways of that class.
	KindGatewayClass = Kind{"gateway.networking.k8s.io", "GatewayClass"}
	// KindPolicyHTTPRoute is Linkerd's own HTTPRoute group; its schema is a
	// subset of Gateway API's, so it shares the Go type.
	KindPolicyHTTPRoute = Kind{"policy.linkerd.io", "HTTPRoute"}
)

func init() {
	register(&KindInfo{Kind: KindNamespace, Versions: []string{"v1"}, Plural: "namespaces", ShortNames: []string{"ns"},
		New: func() Object { return &corev1.Namespace{} }, Validate: validateNamespace})
	register(&KindInfo{Kind: KindService, Versions: []string{"v1"}, Plural: "services", ShortNames: []string{"svc"}, Namespaced: true,
		New: func() Object { return &corev1.Service{} }, Validate: validateService})
	register(&KindInfo{Kind: KindPod, Versions: []string{"v1"}, Plural: "pods", ShortNames: []string{"po"}, Namespaced: true,
		New: func() Object { return &corev1.Pod{} }})
	register(&KindInfo{Kind: KindSecret, Versions: []string{"v1"}, Plural: "secrets", Namespaced: true,
		New: func() Object { return &corev1.Secret{} }})
	register(&KindInfo{Kind: KindServiceAccount, Versions: []string{"v1"}, Plural: "serviceaccounts", ShortNames: []string{"sa"}, Namespaced: true,
		New: func() Object { return &corev1.ServiceAccount{} }})
	register(&KindInfo{Kind: KindDeployment, Versions: []string{"v1"}, Plural: "deployments", ShortNames: []string{"deploy"}, Namespaced: true,
		New: func() Object { return &appsv1.Deployment{} }, Validate: validateDeployment})
	register(&KindInfo{Kind: KindEndpointSlice, Versions: []string{"v1"}, Plural: "endpointslices", Namespaced: true,
		New: func() Object { return &discoveryv1.EndpointSlice{} }})
	register(&KindInfo{Kind: KindHTTPRoute, Versions: []string{"v1", "v1beta1"}, Plural: "httproutes", Namespaced: true,
		New: func() Object { return &gatewayv1.HTTPRoute{} }, Validate: validateHTTPRoute})
	register(&KindInfo{Kind: KindPolicyHTTPRoute, Versions: []string{"v1beta3", "v1beta2", "v1beta1", "v1alpha1"}, Plural: "httproutes", Namespaced: true,
		New: func() Object { return &gatewayv1.HTTPRoute{} }, Validate: validateHTTPRoute})
	register(&KindInfo{Kind: KindGRPCRoute, Versions: []string{"v1", "v1alpha2"}, Plural: "grpcroutes", Namespaced: true,
		New: func() Object { return &gatewayv1.GRPCRoute{} }, Validate: validateGRPCRoute})
	register(&KindInfo{Kind: KindGateway, Versions: []string{"v1", "v1beta1"}, Plural: "gateways", ShortNames: []string{"gtw"}, Namespaced: true,
		New: func() Object { return &gatewayv1.Gateway{} }, Validate: validateGateway})
	register(&KindInfo{Kind: KindGatewayClass, Versions: []string{"v1", "v1beta1"}, Plural: "gatewayclasses", ShortNames: []string{"gc"},
		New: func() Object { return &gatewayv1.GatewayClass{} }, Validate: validateGatewayClass})
}

// New returns an empty object of kind k with its TypeMeta set to the
// preferred version, or nil if k is not registered.
func New(k Kind) Object {
	ki := Lookup(k)
	if ki == nil {
		return nil
	}
	o := ki.New()
	o.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: k.Group, Version: ki.Versions[0], Kind: k.Kind})
	return o
}
