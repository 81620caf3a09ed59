package api

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func mustDecodeFile(t *testing.T, path string) []Object {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := Decode(f, path)
	if err != nil {
		t.Fatalf("Decode(%s): %v", path, err)
	}
	return objs
}

func TestDecodeValidManifests(t *testing.T) {
	objs := mustDecodeFile(t, "testdata/valid-mesh.yaml")
	var got []string
	for _, o := range objs {
		got = append(got, RefOf(o).String())
	}
	want := []string{
		"Namespace/faces",
		"ServiceAccount/faces/smiley",
		"Deployment.apps/faces/smiley",
		"Service/faces/smiley",
		"HTTPRoute.gateway.networking.k8s.io/faces/smiley-canary",
		"HTTPRoute.policy.linkerd.io/faces/smiley-authz-route",
		"GRPCRoute.gateway.networking.k8s.io/emojivoto/emoji",
		"Gateway.gateway.networking.k8s.io/faces/weft-ingress",
		"Server.policy.linkerd.io/faces/smiley-http",
		"Server.policy.linkerd.io/faces/smiley-admin",
		"Server.policy.linkerd.io/faces/vm-http",
		"ServerAuthorization.policy.linkerd.io/faces/smiley-from-face",
		"ServerAuthorization.policy.linkerd.io/faces/admin-everyone",
		"AuthorizationPolicy.policy.linkerd.io/faces/smiley-authz",
		"AuthorizationPolicy.policy.linkerd.io/faces/route-sa",
		"AuthorizationPolicy.policy.linkerd.io/faces/whole-namespace",
		"MeshTLSAuthentication.policy.linkerd.io/faces/face-identity",
		"MeshTLSAuthentication.policy.linkerd.io/faces/face-refs",
		"NetworkAuthentication.policy.linkerd.io/faces/cluster-network",
		"HTTPLocalRateLimitPolicy.policy.linkerd.io/faces/smiley-rl",
		"EgressNetwork.policy.linkerd.io/linkerd-egress/all-egress",
		"EgressNetwork.policy.linkerd.io/linkerd-egress/internal",
		"ServiceProfile.linkerd.io/faces/smiley.faces.svc.cluster.local",
		"TrafficSplit.split.smi-spec.io/faces/smiley-split",
		"TrafficSplit.split.smi-spec.io/emojivoto/web-split",
		"Link.multicluster.linkerd.io/linkerd-multicluster/east",
		"ExternalWorkload.workload.linkerd.io/faces/legacy-vm",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("decoded objects (-want +got):\n%s", diff)
	}

	// Spot-check that values land in the typed fields.
	dep := objs[2].(*appsv1.Deployment)
	if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort != 8000 {
		t.Errorf("deployment decoded wrong: %+v", dep.Spec)
	}
	svc := objs[3].(*corev1.Service)
	if svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("service targetPort = %v, want http", svc.Spec.Ports[0].TargetPort)
	}
	route := objs[4].(*gatewayv1.HTTPRoute)
	if *route.Spec.Rules[0].BackendRefs[1].Weight != 10 || *route.Spec.Rules[0].Timeouts.Request != "10s" {
		t.Errorf("httproute decoded wrong: %+v", route.Spec.Rules[0])
	}
	srv := objs[8].(*Server)
	if srv.Spec.Port.StrVal != "http" || srv.Spec.ProxyProtocol != ProtocolHTTP1 || srv.Spec.AccessPolicy != "deny" {
		t.Errorf("server decoded wrong: %+v", srv.Spec)
	}
	rl := objs[19].(*HTTPLocalRateLimitPolicy)
	if rl.Spec.Total.RequestsPerSecond != 100 || rl.Spec.Overrides[0].ClientRefs[0].Name != "face" {
		t.Errorf("ratelimit decoded wrong: %+v", rl.Spec)
	}
	sp := objs[22].(*ServiceProfile)
	if sp.Spec.DstOverrides[0].Weight != "1" || sp.Spec.DstOverrides[1].Weight != "500m" {
		t.Errorf("profile weights = %q, %q; want 1, 500m", sp.Spec.DstOverrides[0].Weight, sp.Spec.DstOverrides[1].Weight)
	}
	ts1, ts2 := objs[23].(*TrafficSplit), objs[24].(*TrafficSplit)
	if ts1.Spec.Backends[0].WeightMilli() != 90000 || ts2.Spec.Backends[0].WeightMilli() != 500 {
		t.Errorf("traffic split weights = %d, %d; want 90000, 500", ts1.Spec.Backends[0].WeightMilli(), ts2.Spec.Backends[0].WeightMilli())
	}
	link := objs[25].(*Link)
	if link.Spec.GatewayPort != "4143" || link.Spec.ProbeSpec.Period != "3s" {
		t.Errorf("link decoded wrong: %+v", link.Spec)
	}
	ew := objs[26].(*ExternalWorkload)
	if ew.Spec.WorkloadIPs[0].IP != "192.0.2.10" || ew.Status.Conditions[0].Status != "True" {
		t.Errorf("external workload decoded wrong: %+v", ew)
	}
}

// decodeProblems decodes doc and returns its DecodeErrors (failing the test
// if it decodes cleanly).
func decodeProblems(t *testing.T, doc string) DecodeErrors {
	t.Helper()
	objs, err := Decode(strings.NewReader(doc), "bad.yaml")
	if err == nil {
		t.Fatalf("Decode succeeded with %d objects, want an error", len(objs))
	}
	if objs != nil {
		t.Errorf("Decode returned objects along with an error")
	}
	var de DecodeErrors
	if !errors.As(err, &de) {
		t.Fatalf("error is %T, want DecodeErrors: %v", err, err)
	}
	return de
}

func hasProblem(errs DecodeErrors, path, reason string) bool {
	for _, e := range errs {
		if e.Path == path && strings.Contains(e.Reason, reason) {
			return true
		}
	}
	return false
}

const (
	svcHead = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: faces\n"
	depHead = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
	depBody = `spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
`
	routeHead = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n"
	routeBody = `spec:
  parentRefs:
  - {name: web, kind: Service, group: core, port: 80}
  rules:
  - backendRefs:
    - {name: web, port: 80}
`
)

func svcWithAnnotation(key, value string) string {
	return svcHead + "  annotations:\n    " + key + ": \"" + value + "\"\nspec:\n  ports:\n  - port: 80\n"
}

func TestDecodeInvalid(t *testing.T) {
	tests := []struct {
		name   string
		doc    string
		path   string
		reason string
	}{
		// Structure.
		{"not yaml", "apiVersion: v1\nkind: [\n", "", "not valid YAML or JSON"},
		{"scalar document", "hello\n", "", "must be an object with apiVersion and kind, not a string"},
		{"missing apiVersion", "kind: Service\nmetadata: {name: a}\n", "apiVersion", "required"},
		{"missing kind", "apiVersion: v1\nmetadata: {name: a}\n", "kind", "required"},
		{"bad apiVersion", "apiVersion: a/b/c\nkind: Service\n", "apiVersion", "want group/version"},
		{"unknown group", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n", "kind", "known groups are apps, core"},
		{"unknown kind in known group", "apiVersion: policy.linkerd.io/v1alpha1\nkind: Widget\nmetadata: {name: a}\n", "kind", "it has AuthorizationPolicy, EgressNetwork"},
		{"kind in another group", "apiVersion: v1\nkind: Deployment\nmetadata: {name: a}\n", "kind", "Weft reads it as apps/v1 Deployment"},
		{"unserved version", "apiVersion: policy.linkerd.io/v2\nkind: Server\nmetadata: {name: a}\n", "apiVersion", "use one of policy.linkerd.io/v1beta3, policy.linkerd.io/v1beta2"},
		{"misspelt kind", "apiVersion: v1\nkind: Servce\nmetadata: {name: a}\n", "kind", `(did you mean "Service"?)`},
		{"missing name", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", "metadata.name", "required"},
		{"namespace on cluster-scoped", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "metadata.namespace", "cluster-scoped"},
		{"unknown top-level field", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nspecs: {}\n", "specs", `unknown field (did you mean "spec"?)`},
		{"duplicate key", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nmetadata: {name: b}\n", "metadata", "duplicate field"},
		{"duplicate label", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    app: x\n    app: y\n", "metadata.labels[app]", "duplicate key"},
		{"duplicate nested", depHead + depBody + "        image: web:2\n", "spec.template.spec.containers[0].image", "duplicate field"},
		{"label wrong type", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {tier: 1}\n", "metadata.labels[tier]", "want string, got number 1"},

		// Deployment.
		{"nested unknown field", depHead + depBody + "        imagePullPolicyy: Always\n", "spec.template.spec.containers[0].imagePullPolicyy", `did you mean "imagePullPolicy"`},
		{"replicas as string", depHead + "spec:\n  replicas: \"3\"\n" + strings.TrimPrefix(depBody, "spec:\n"), "spec.replicas", `want integer, got string "3"`},
		{"replicas fraction", depHead + "spec:\n  replicas: 1.5\n" + strings.TrimPrefix(depBody, "spec:\n"), "spec.replicas", "want integer, got number 1.5"},
		{"replicas out of range", depHead + "spec:\n  replicas: 9999999999\n" + strings.TrimPrefix(depBody, "spec:\n"), "spec.replicas", "out of range for int32"},
		{"replicas negative", depHead + "spec:\n  replicas: -1\n" + strings.TrimPrefix(depBody, "spec:\n"), "spec.replicas", "must not be negative"},
		{"container port as string", depHead + depBody + "        ports:\n        - containerPort: 80\n        - containerPort: http\n", "spec.template.spec.containers[0].ports[1].containerPort", `want integer, got string "http"`},
		{"container port zero", depHead + depBody + "        ports:\n        - containerPort: 0\n", "spec.template.spec.containers[0].ports[0].containerPort", "not a port number"},
		{"container port name too long", depHead + depBody + "        ports:\n        - containerPort: 80\n          name: a-very-long-port-name\n", "spec.template.spec.containers[0].ports[0].name", "invalid port name"},
		{"bad quantity", depHead + depBody + "        resources:\n          limits: {cpu: lots}\n", "spec.template.spec.containers[0].resources.limits[cpu]", "quantities must match"},
		{"no containers", depHead + "spec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: []\n", "spec.template.spec.containers", "at least one container"},
		{"selector mismatch", depHead + strings.Replace(depBody, "labels: {app: web}", "labels: {app: api}", 1), "spec.template.metadata.labels", "do not match spec.selector"},
		{"selector missing", depHead + "spec:\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web}]\n", "spec.selector", "required"},
		{"selector bad operator", depHead + "spec:\n  selector:\n    matchExpressions: [{key: app, operator: Equals, values: [web]}]\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web}]\n", "spec.selector.matchExpressions[0].operator", `unknown operator "Equals"`},
		{"duplicate container", depHead + depBody + "      - name: web\n", "spec.template.spec.containers[1].name", "duplicate container name"},
		{"inject annotation", depHead + "  annotations: {linkerd.io/inject: yes-please}\n" + depBody, "metadata.annotations[linkerd.io/inject]", "use enabled, disabled or ingress"},
		{"retry annotation on deployment", depHead + "  annotations: {retry.linkerd.io/limit: \"2\"}\n" + depBody, "metadata.annotations[retry.linkerd.io/limit]", "only takes effect on a Service, HTTPRoute or GRPCRoute"},
		{"bad default policy", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations: {config.linkerd.io/default-inbound-policy: allow}\n", "metadata.annotations[config.linkerd.io/default-inbound-policy]", "use one of all-unauthenticated"},

		// Service.
		{"service port missing", svcHead + "spec:\n  ports:\n  - targetPort: 8080\n", "spec.ports[0].port", "required"},
		{"service port too big", svcHead + "spec:\n  ports:\n  - port: 70000\n", "spec.ports[0].port", "not a port number"},
		{"service port as string", svcHead + "spec:\n  ports:\n  - port: http\n", "spec.ports[0].port", `want integer, got string "http"`},
		{"service targetPort list", svcHead + "spec:\n  ports:\n  - port: 80\n    targetPort: [1]\n", "spec.ports[0].targetPort", "want integer or string, got list"},
		{"service targetPort name", svcHead + "spec:\n  ports:\n  - port: 80\n    targetPort: Not_A_Name\n", "spec.ports[0].targetPort", "invalid port name"},
		{"service targetPort range", svcHead + "spec:\n  ports:\n  - port: 80\n    targetPort: 65536\n", "spec.ports[0].targetPort", "not a port number"},
		{"service unnamed ports", svcHead + "spec:\n  ports:\n  - port: 80\n  - port: 81\n    name: b\n", "spec.ports[0].name", "more than one port"},
		{"service protocol", svcHead + "spec:\n  ports:\n  - port: 80\n    protocol: HTTP\n", "spec.ports[0].protocol", `unknown protocol "HTTP"`},
		{"service selector", svcHead + "spec:\n  selector: {app: \"not valid!\"}\n  ports:\n  - port: 80\n", "spec.selector[app]", "invalid label value"},
		{"service type", svcHead + "spec:\n  type: Internal\n  ports:\n  - port: 80\n", "spec.type", "unknown type"},
		{"service no ports", svcHead + "spec:\n  selector: {app: web}\n", "spec.ports", "at least one port"},
		{"service name", "apiVersion: v1\nkind: Service\nmetadata: {name: Web}\nspec:\n  ports: [{port: 80}]\n", "metadata.name", "invalid name"},
		{"service name with dot", "apiVersion: v1\nkind: Service\nmetadata: {name: web.v1}\nspec:\n  ports: [{port: 80}]\n", "metadata.name", "becomes part of DNS names"},
		{"server name", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: Web_Server}\nspec:\n  podSelector: {}\n  port: 80\n", "metadata.name", "invalid name"},
		{"bad namespace", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: my.ns}\n", "metadata.namespace", "invalid namespace"},
		{"bad label key", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  labels: {\"bad key\": x}\n", "metadata.labels[bad key]", "invalid label key"},

		// Linkerd annotations.
		{"retry http", svcWithAnnotation("retry.linkerd.io/http", "5xx,600"), "metadata.annotations[retry.linkerd.io/http]", `"600" is not an HTTP status`},
		{"retry http word", svcWithAnnotation("retry.linkerd.io/http", "server-error"), "metadata.annotations[retry.linkerd.io/http]", "want 5xx, gateway-error"},
		{"retry http inverted", svcWithAnnotation("retry.linkerd.io/http", "504-500"), "metadata.annotations[retry.linkerd.io/http]", "end is below the start"},
		{"retry grpc", svcWithAnnotation("retry.linkerd.io/grpc", "unavailable,not-found"), "metadata.annotations[retry.linkerd.io/grpc]", `unknown gRPC status "not-found"`},
		{"retry limit negative", svcWithAnnotation("retry.linkerd.io/limit", "-1"), "metadata.annotations[retry.linkerd.io/limit]", "non-negative integer"},
		{"retry timeout no unit", svcWithAnnotation("retry.linkerd.io/timeout", "300"), "metadata.annotations[retry.linkerd.io/timeout]", "want an integer with a unit"},
		{"timeout fraction", svcWithAnnotation("timeout.linkerd.io/request", "1.5s"), "metadata.annotations[timeout.linkerd.io/request]", "want an integer with a unit"},
		{"timeout compound", svcWithAnnotation("timeout.linkerd.io/response", "1m30s"), "metadata.annotations[timeout.linkerd.io/response]", "want an integer with a unit"},
		{"timeout idle unit", svcWithAnnotation("timeout.linkerd.io/idle", "5us"), "metadata.annotations[timeout.linkerd.io/idle]", "ms, s, m, h or d"},
		{"failure accrual mode", svcWithAnnotation("balancer.linkerd.io/failure-accrual", "unified-ish"), "metadata.annotations[balancer.linkerd.io/failure-accrual]", `use "consecutive"`},
		{"failure accrual max failures", svcHead + "  annotations:\n    balancer.linkerd.io/failure-accrual: consecutive\n    balancer.linkerd.io/failure-accrual-consecutive-max-failures: \"0\"\nspec:\n  ports: [{port: 80}]\n", "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-max-failures]", "positive integer"},
		{"failure accrual penalties", svcHead + "  annotations:\n    balancer.linkerd.io/failure-accrual: consecutive\n    balancer.linkerd.io/failure-accrual-consecutive-min-penalty: 2m\n    balancer.linkerd.io/failure-accrual-consecutive-max-penalty: 1m\nspec:\n  ports: [{port: 80}]\n", "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-max-penalty]", "below the min penalty"},
		{"failure accrual jitter", svcHead + "  annotations:\n    balancer.linkerd.io/failure-accrual: consecutive\n    balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio: lots\nspec:\n  ports: [{port: 80}]\n", "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio]", "want a number from 0 to 100"},
		{"failure accrual parameter without mode", svcWithAnnotation("balancer.linkerd.io/failure-accrual-consecutive-max-failures", "3"), "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-max-failures]", "has no effect unless"},
		{"failure accrual on route", routeHead + "  annotations: {balancer.linkerd.io/failure-accrual: consecutive}\n" + routeBody, "metadata.annotations[balancer.linkerd.io/failure-accrual]", "only takes effect on a Service"},
		{"opaque ports", svcWithAnnotation("config.linkerd.io/opaque-ports", "3306,a_b"), "metadata.annotations[config.linkerd.io/opaque-ports]", `invalid port "a_b"`},

		// HTTPRoute and GRPCRoute.
		{"route without parents", routeHead + "spec:\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n", "spec.parentRefs", "required"},
		{"route service parent without group", routeHead + "spec:\n  parentRefs: [{name: web, kind: Service, port: 80}]\n", "spec.parentRefs[0].group", "set group: core"},
		{"route parent kind", routeHead + "spec:\n  parentRefs: [{name: x, kind: Deployment, group: apps}]\n", "spec.parentRefs[0]", "cannot attach to Deployment.apps"},
		{"route path type", routeHead + routeBody + "    matches:\n    - path: {type: Prefix, value: /}\n", "spec.rules[0].matches[0].path.type", `unknown match type "Prefix"; use Exact, PathPrefix or RegularExpression`},
		{"route path no slash", routeHead + routeBody + "    matches:\n    - path: {type: Exact, value: api}\n", "spec.rules[0].matches[0].path.value", "must start with /"},
		{"route path regex", routeHead + routeBody + "    matches:\n    - path: {type: RegularExpression, value: \"/(a\"}\n", "spec.rules[0].matches[0].path.value", "invalid regular expression"},
		{"route header regex", routeHead + routeBody + "    matches:\n    - headers: [{name: x, type: RegularExpression, value: \"[\"}]\n", "spec.rules[0].matches[0].headers[0].value", "invalid regular expression"},
		{"route method", routeHead + routeBody + "    matches:\n    - method: get\n", "spec.rules[0].matches[0].method", `unknown method "get"`},
		{"route timeout no unit", routeHead + routeBody + "    timeouts: {request: \"10\"}\n", "spec.rules[0].timeouts.request", "GEP-2257"},
		{"route timeout fraction", routeHead + routeBody + "    timeouts: {request: 1.5s}\n", "spec.rules[0].timeouts.request", "GEP-2257"},
		{"route timeout too many parts", routeHead + routeBody + "    timeouts: {request: 1h1m1s1ms1h}\n", "spec.rules[0].timeouts.request", "GEP-2257"},
		{"route backend timeout above request", routeHead + routeBody + "    timeouts: {request: 1s, backendRequest: 2s}\n", "spec.rules[0].timeouts.backendRequest", "exceeds the request timeout"},
		{"route weight", routeHead + routeBody + "    - {name: web2, port: 80, weight: 1000001}\n", "spec.rules[0].backendRefs[1].weight", "out of range 0-1000000"},
		{"route negative weight", routeHead + routeBody + "    - {name: web2, port: 80, weight: -1}\n", "spec.rules[0].backendRefs[1].weight", "out of range"},
		{"route backend without port", routeHead + routeBody + "    - {name: web2}\n", "spec.rules[0].backendRefs[1].port", "required when referring to a Service"},
		{"route filter type", routeHead + routeBody + "    filters: [{type: Rewrite}]\n", "spec.rules[0].filters[0].type", `unknown filter "Rewrite"`},
		{"route redirect code 304", routeHead + routeBody + "    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]\n", "spec.rules[0].filters[0].requestRedirect.statusCode", "use 301, 302, 303, 307 or 308"},
		{"route redirect code 300", routeHead + routeBody + "    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 300}}]\n", "spec.rules[0].filters[0].requestRedirect.statusCode", "300 is not a redirect code"},
		{"route filter config missing", routeHead + routeBody + "    filters: [{type: RequestHeaderModifier}]\n", "spec.rules[0].filters[0].requestHeaderModifier", "required for filter type"},
		{"route retry annotation", routeHead + "  annotations: {retry.linkerd.io/http: \"5xx,4xx\"}\n" + routeBody, "metadata.annotations[retry.linkerd.io/http]", "want 5xx, gateway-error"},
		{"route timeout annotation", routeHead + "  annotations: {timeout.linkerd.io/request: 10}\n" + routeBody, "metadata.annotations[timeout.linkerd.io/request]", `want string, got number 10 (quote it in YAML: "10")`},
		{"policy route rewrite", "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata: {name: r}\n" + routeBody + "    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n", "spec.rules[0].filters[0].type", "not supported by policy.linkerd.io HTTPRoutes"},
		{"policy route unknown field", "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata: {name: r}\n" + routeBody + "    timeout: 1s\n", "spec.rules[0].timeout", `did you mean "timeouts"`},
		{"grpc method empty", "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n" + routeBody + "    matches:\n    - method: {type: Exact}\n", "spec.rules[0].matches[0].method", "set service, method or both"},
		{"grpc method regex", "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n" + routeBody + "    matches:\n    - method: {type: RegularExpression, service: \"(\"}\n", "spec.rules[0].matches[0].method", "invalid regular expression"},
		{"grpc retry annotation", "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: g\n  annotations: {retry.linkerd.io/grpc: aborted}\n" + routeBody, "metadata.annotations[retry.linkerd.io/grpc]", `unknown gRPC status "aborted"`},
		{"gateway listener", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: weft\n  listeners: [{name: http, port: 80, protocol: QUIC}]\n", "spec.listeners[0].protocol", `unknown protocol "QUIC"`},
		{"gatewayclass unknown field", "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weft}\nspec:\n  controllerName: weft.io/gateway-controller\n  parametersRef: {group: weft.io, kind: Config, name: c, namespce: weft}\n", "spec.parametersRef.namespce", `did you mean "namespace"`},
		{"gatewayclass no controller", "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weft}\nspec: {}\n", "spec.controllerName", "required"},
		{"gatewayclass controller path", "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: GatewayClass\nmetadata: {name: weft}\nspec: {controllerName: weft.io}\n", "spec.controllerName", "not a domain-prefixed path"},
		{"gatewayclass namespaced", "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weft, namespace: weft}\nspec: {controllerName: weft.io/gateway-controller}\n", "metadata.namespace", "GatewayClass is cluster-scoped"},

		// Policy.
		{"server no selector", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  port: 80\n", "spec.podSelector", "set podSelector or externalWorkloadSelector"},
		{"server both selectors", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  port: 80\n  podSelector: {}\n  externalWorkloadSelector: {}\n", "spec.externalWorkloadSelector", "not both"},
		{"server protocol", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  podSelector: {}\n  port: 80\n  proxyProtocol: HTTP/3\n", "spec.proxyProtocol", `unknown protocol "HTTP/3"; use one of unknown, HTTP/1, HTTP/2, gRPC, opaque, TLS`},
		{"server access policy", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  podSelector: {}\n  port: 80\n  accessPolicy: allow\n", "spec.accessPolicy", `unknown policy "allow"`},
		{"server port missing", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  podSelector: {}\n", "spec.port", "required"},
		{"server port quoted", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  podSelector: {}\n  port: \"8080\"\n", "spec.port", "write the port number without quotes"},
		{"server port range", "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n  podSelector: {}\n  port: 70000\n", "spec.port", "not a port number"},
		{"serverauthz client", "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\nmetadata: {name: a}\nspec:\n  server: {name: s}\n  client: {}\n", "spec.client", "set meshTLS or unauthenticated"},
		{"serverauthz server", "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\nmetadata: {name: a}\nspec:\n  server: {}\n  client: {unauthenticated: true}\n", "spec.server", "set name or selector"},
		{"serverauthz cidr", "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\nmetadata: {name: a}\nspec:\n  server: {name: s}\n  client:\n    unauthenticated: true\n    networks: [{cidr: 10.0.0.0/33}]\n", "spec.client.networks[0].cidr", "invalid network"},
		{"serverauthz except outside", "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\nmetadata: {name: a}\nspec:\n  server: {name: s}\n  client:\n    unauthenticated: true\n    networks: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]\n", "spec.client.networks[0].except[0]", "is not inside 10.0.0.0/8"},
		{"authz policy target", "apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: faces}\nspec:\n  targetRef: {kind: Service, name: web}\n  requiredAuthenticationRefs: []\n", "spec.targetRef", "cannot refer to Service"},
		{"authz policy other namespace", "apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: faces}\nspec:\n  targetRef: {kind: Namespace, name: other}\n  requiredAuthenticationRefs: []\n", "spec.targetRef.name", "only target its own namespace"},
		{"authz policy authn ref", "apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  targetRef: {group: policy.linkerd.io, kind: Server, name: s}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: Server, name: x}]\n", "spec.requiredAuthenticationRefs[0]", "cannot refer to Server.policy.linkerd.io"},
		{"meshtls neither", "apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: m}\nspec: {}\n", "spec", "set identities or identityRefs"},
		{"meshtls bad identity", "apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: m}\nspec:\n  identities: [\"web.*.serviceaccount\"]\n", "spec.identities[0]", "invalid identity"},
		{"meshtls ref kind", "apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: m}\nspec:\n  identityRefs: [{kind: Pod, name: p}]\n", "spec.identityRefs[0]", "use ServiceAccount or Namespace"},
		{"netauthn empty", "apiVersion: policy.linkerd.io/v1alpha1\nkind: NetworkAuthentication\nmetadata: {name: n}\nspec:\n  networks: []\n", "spec.networks", "at least one network"},
		{"ratelimit target", "apiVersion: policy.linkerd.io/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRef: {kind: Service, name: web}\n", "spec.targetRef", "only Server.policy.linkerd.io"},
		{"ratelimit identity above total", "apiVersion: policy.linkerd.io/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRef: {group: policy.linkerd.io, kind: Server, name: s}\n  total: {requestsPerSecond: 10}\n  identity: {requestsPerSecond: 20}\n", "spec.identity.requestsPerSecond", "exceeds total.requestsPerSecond 10"},
		{"ratelimit rps type", "apiVersion: policy.linkerd.io/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRef: {group: policy.linkerd.io, kind: Server, name: s}\n  total: {requestsPerSecond: lots}\n", "spec.total.requestsPerSecond", `want integer, got string "lots"`},
		{"ratelimit override clients", "apiVersion: policy.linkerd.io/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: {name: r}\nspec:\n  targetRef: {group: policy.linkerd.io, kind: Server, name: s}\n  overrides: [{requestsPerSecond: 5, clientRefs: [{kind: Deployment, name: d}]}]\n", "spec.overrides[0].clientRefs[0]", "use ServiceAccount"},
		{"egress policy", "apiVersion: policy.linkerd.io/v1alpha1\nkind: EgressNetwork\nmetadata: {name: e}\nspec:\n  trafficPolicy: Block\n", "spec.trafficPolicy", `unknown policy "Block"; use Allow or Deny`},
		{"egress policy missing", "apiVersion: policy.linkerd.io/v1alpha1\nkind: EgressNetwork\nmetadata: {name: e}\nspec: {}\n", "spec.trafficPolicy", "required"},

		// TrafficSplit, Link, ExternalWorkload, ServiceProfile.
		{"split negative weight", "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: a, weight: 1}, {service: b, weight: -1}]\n", "spec.backends[1].weight", "must not be negative"},
		{"split weight garbage", "apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: a, weight: half}]\n", "spec.backends[0].weight", "quantities must match"},
		{"split backend name", "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: web.v2, weight: 1}]\n", "spec.backends[0].service", "invalid Service name"},
		{"split no apex", "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  backends: [{service: a, weight: 1}]\n", "spec.service", "required"},
		{"split all zero", "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: a, weight: 0}]\n", "spec.backends", "every weight is zero"},
		{"link port", "apiVersion: multicluster.linkerd.io/v1alpha3\nkind: Link\nmetadata: {name: l}\nspec:\n  targetClusterName: east\n  gatewayAddress: 1.2.3.4\n  gatewayPort: \"gateway\"\n", "spec.gatewayPort", "invalid port"},
		{"link port as number", "apiVersion: multicluster.linkerd.io/v1alpha3\nkind: Link\nmetadata: {name: l}\nspec:\n  targetClusterName: east\n  gatewayPort: 4143\n", "spec.gatewayPort", "want string, got number 4143"},
		{"link probe period", "apiVersion: multicluster.linkerd.io/v1alpha3\nkind: Link\nmetadata: {name: l}\nspec:\n  targetClusterName: east\n  probeSpec: {period: \"3\"}\n", "spec.probeSpec.period", "want a number with a unit"},
		{"link cluster name", "apiVersion: multicluster.linkerd.io/v1alpha3\nkind: Link\nmetadata: {name: l}\nspec: {}\n", "spec.targetClusterName", "required"},
		{"ew identity", "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {serverName: vm.local}\n  workloadIPs: [{ip: 10.0.0.1}]\n", "spec.meshTLS.identity", "required"},
		{"ew two ips", "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {identity: spiffe://x/y, serverName: vm.local}\n  workloadIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]\n", "spec.workloadIPs", "at most one address"},
		{"ew bad ip", "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {identity: spiffe://x/y, serverName: vm.local}\n  workloadIPs: [{ip: 10.0.0.300}]\n", "spec.workloadIPs[0].ip", "invalid IP address"},
		{"ew protocol", "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {identity: spiffe://x/y, serverName: vm.local}\n  workloadIPs: [{ip: 10.0.0.1}]\n  ports: [{port: 80, protocol: SCTP}]\n", "spec.ports[0].protocol", "use TCP or UDP"},
		{"ew condition time", "apiVersion: workload.linkerd.io/v1beta1\nkind: ExternalWorkload\nmetadata: {name: w}\nspec:\n  meshTLS: {identity: spiffe://x/y, serverName: vm.local}\n  workloadIPs: [{ip: 10.0.0.1}]\nstatus:\n  conditions: [{type: Ready, status: \"True\", lastProbeTime: yesterday}]\n", "status.conditions[0].lastProbeTime", "invalid value"},
		{"profile weight", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  dstOverrides: [{authority: a, weight: lots}]\n", "spec.dstOverrides[0].weight", `invalid weight "lots"`},
		{"profile override field", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  dstOverrides: [{authority: a, weight: 1, wieght: 2}]\n", "spec.dstOverrides[0]", `unknown field "wieght"`},
		{"profile status range", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  routes: [{name: r, condition: {method: GET}, responseClasses: [{condition: {status: {min: 500, max: 450}}, isFailure: true}]}]\n", "spec.routes[0].responseClasses[0].condition.status", "max 450 is below min 500"},
		{"profile empty condition", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  routes: [{name: r, condition: {}}]\n", "spec.routes[0].condition", "empty condition"},
		{"profile ttl", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: \"0\"}\n", "spec.retryBudget.ttl", "want a number with a unit"},
		{"profile timeout", "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: web.faces.svc.cluster.local}\nspec:\n  routes: [{name: r, condition: {method: GET}, timeout: \"10\"}]\n", "spec.routes[0].timeout", "want a number with a unit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := decodeProblems(t, tc.doc)
			if !hasProblem(errs, tc.path, tc.reason) {
				t.Fatalf("want a problem at %q containing %q; got:\n%v", tc.path, tc.reason, errs)
			}
			for _, e := range errs {
				if e.Source != "bad.yaml" || e.Doc != 0 {
					t.Errorf("problem %v: source %q doc %d, want bad.yaml doc 0", e, e.Source, e.Doc)
				}
			}
		})
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	doc := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: faces
  labels: {app: 1}
  foo: bar
spec:
  replicas: "3"
  replica: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: web
        bar: 1
        ports:
        - containerPort: 80
        - containerPort: http
        - containerPort: 0
---
# a comment-only document is skipped and not counted

---
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    retry.linkerd.io/limit: many
    timeout.linkerd.io/request: 1.5s
spec:
  ports:
  - port: 0
    targetPort: [1]
`
	errs := decodeProblems(t, doc)
	type key struct {
		Doc    int
		Object string
		Path   string
	}
	var got []key
	for _, e := range errs {
		if e.Source != "bad.yaml" {
			t.Errorf("source %q, want bad.yaml", e.Source)
		}
		got = append(got, key{e.Doc, e.Object, e.Path})
	}
	want := []key{
		{0, "Deployment/web", "metadata.foo"},
		{0, "Deployment/web", "metadata.labels[app]"},
		{0, "Deployment/web", "spec.replica"},
		{0, "Deployment/web", "spec.replicas"},
		{0, "Deployment/web", "spec.template.spec.containers[0].bar"},
		{0, "Deployment/web", "spec.template.spec.containers[0].ports[1].containerPort"},
		{0, "Deployment/web", "spec.template.metadata.labels"},
		{0, "Deployment/web", "spec.template.spec.containers[0].ports[2].containerPort"},
		{1, "Service/web", "spec.ports[0].targetPort"},
		{1, "Service/web", "metadata.annotations[retry.linkerd.io/limit]"},
		{1, "Service/web", "metadata.annotations[timeout.linkerd.io/request]"},
		{1, "Service/web", "spec.ports[0].port"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nall:\n%v", diff, errs)
	}
	// A value that could not be decoded is reported once, not again by
	// validation of its zero value.
	for _, e := range errs {
		if e.Path == "spec.template.spec.containers[0].ports[1].containerPort" && !strings.Contains(e.Reason, "want integer") {
			t.Errorf("ports[1] reported by validation too: %v", e)
		}
	}
	msg := errs.Error()
	for _, s := range []string{
		`bad.yaml: document 0 (Deployment/web): spec.replicas: want integer, got string "3"`,
		`bad.yaml: document 1 (Service/web): spec.ports[0].port: required`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error text lacks %q:\n%s", s, msg)
		}
	}
}

func TestDecodeDuplicateFieldsKeepReporting(t *testing.T) {
	errs := decodeProblems(t, "apiVersion: v1\nkind: Service\nmetadata: {name: s, name: t}\nspec:\n  ports:\n  - port: 80\n    targetPort: [1]\n")
	if !hasProblem(errs, "metadata.name", "duplicate field") {
		t.Errorf("duplicate not reported: %v", errs)
	}
	if !hasProblem(errs, "spec.ports[0].targetPort", "want integer or string") {
		t.Errorf("problem after the duplicate not reported: %v", errs)
	}
	errs = decodeProblems(t, `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80,"port":81}]}}`)
	if !hasProblem(errs, "spec.ports[0].port", "duplicate field") {
		t.Errorf("JSON duplicate not reported: %v", errs)
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"single object", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"faces"}}`, []string{"Namespace/faces"}},
		{"stream of objects", "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n  {\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"b\"}}", []string{"Namespace/a", "Namespace/b"}},
		{"list", `{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[
			{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"faces"},"spec":{"ports":[{"port":80}]}},
			{"apiVersion":"policy.linkerd.io/v1beta3","kind":"Server","metadata":{"name":"web","namespace":"faces"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"port":8080}}]}`,
			[]string{"Service/faces/web", "Server.policy.linkerd.io/faces/web"}},
		{"yaml list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n", []string{"Namespace/a"}},
		{"empty", "\n# nothing\n---\n", nil},
		{"yaml flow mapping", "{apiVersion: v1, kind: Namespace, metadata: {name: a}}\n---\n{apiVersion: v1, kind: Namespace, metadata: {name: b}}\n", []string{"Namespace/a", "Namespace/b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode(strings.NewReader(tc.in), "in.json")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, RefOf(o).String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	errs := decodeProblems(t, `{"apiVersion":"v1","kind":"List","items":[
		{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ok"}},
		{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":"80"}]}},
		7]}`)
	if !hasProblem(errs, "items[1].spec.ports[0].port", `want integer, got string "80"`) {
		t.Errorf("list item problem missing: %v", errs)
	}
	if !hasProblem(errs, "items[2]", "got number 7") {
		t.Errorf("bad list item missing: %v", errs)
	}
	errs = decodeProblems(t, "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n{\"apiVersion\":")
	if len(errs) != 1 || errs[0].Doc != 1 || !strings.Contains(errs[0].Reason, "invalid JSON") {
		t.Errorf("truncated second object: %v", errs)
	}
}

func TestDecodeDocumentIndex(t *testing.T) {
	doc := "---\n# leading comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b, bogus: 1}\n"
	errs := decodeProblems(t, doc)
	if len(errs) != 1 || errs[0].Doc != 1 || errs[0].Path != "metadata.bogus" || errs[0].Object != "Namespace/b" {
		t.Fatalf("got %v, want one problem in document 1 at metadata.bogus", errs)
	}
}

func TestResolveKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
	}{
		{"svc", KindService},
		{"services", KindService},
		{"Service", KindService},
		{"deploy", KindDeployment},
		{"deployments.apps", KindDeployment},
		{"deployments.v1.apps", KindDeployment},
		{"Servers.v1beta1.policy.linkerd.io", KindServer},
		{"sp", KindServiceProfile},
		{"serviceprofiles.linkerd.io", KindServiceProfile},
		{"httproute", KindHTTPRoute},
		{"HTTPRoutes", KindHTTPRoute},
		{"httproutes.gateway.networking.k8s.io", KindHTTPRoute},
		{"httproutes.policy.linkerd.io", KindPolicyHTTPRoute},
		{"grpcroute", KindGRPCRoute},
		{"server", KindServer},
		{"srv", KindServer},
		{"saz", KindServerAuthorization},
		{"authorizationpolicies", KindAuthorizationPolicy},
		{"meshtlsauthentication", KindMeshTLSAuthentication},
		{"networkauthentications.policy.linkerd.io", KindNetworkAuthentication},
		{"httplocalratelimitpolicy", KindHTTPLocalRateLimitPolicy},
		{"egressnetworks", KindEgressNetwork},
		{"ts", KindTrafficSplit},
		{"trafficsplits.split.smi-spec.io", KindTrafficSplit},
		{"link", KindLink},
		{"externalworkloads", KindExternalWorkload},
		{"ns", KindNamespace},
		{"endpointslices", KindEndpointSlice},
	}
	for _, tc := range tests {
		ki, err := ResolveKind(tc.in)
		if err != nil {
			t.Errorf("ResolveKind(%q): %v", tc.in, err)
			continue
		}
		if ki.Kind != tc.want {
			t.Errorf("ResolveKind(%q) = %v, want %v", tc.in, ki.Kind, tc.want)
		}
	}
	if _, err := ResolveKind("widgets"); err == nil || !strings.Contains(err.Error(), `"widgets"`) {
		t.Errorf("ResolveKind(widgets) error = %v, want one naming it", err)
	}
	// Emissary's Mapping is registered by its own file; resolve it when it is.
	if Lookup(Kind{"getambassador.io", "Mapping"}) != nil {
		if ki, err := ResolveKind("mappings"); err != nil || ki.Kind.Kind != "Mapping" {
			t.Errorf("ResolveKind(mappings) = %v, %v", ki, err)
		}
	}
}

func TestEveryKindDecodesItsOwnEmptyShell(t *testing.T) {
	// New(kind) objects must survive Encode and come back through the
	// store's plain encoding/json decoding.
	for _, ki := range Kinds() {
		o := New(ki.Kind)
		o.SetName("x")
		var buf bytes.Buffer
		if err := Encode(&buf, []Object{o}, FormatJSON); err != nil {
			t.Errorf("%s: Encode: %v", ki.Kind, err)
			continue
		}
		if !strings.HasPrefix(buf.String(), "{\n    \"apiVersion\": \""+ki.APIVersion()+"\",\n    \"kind\": \""+ki.Kind.Kind+"\"") {
			t.Errorf("%s: encoding does not start with apiVersion and kind:\n%s", ki.Kind, buf.String())
		}
	}
}

func TestParseGatewayDuration(t *testing.T) {
	good := map[string]time.Duration{"10s": 10 * time.Second, "500ms": 500 * time.Millisecond, "1h30m": 90 * time.Minute, "0s": 0, "1h2m3s4ms": time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond}
	for in, want := range good {
		if got, err := ParseGatewayDuration(in); err != nil || got != want {
			t.Errorf("ParseGatewayDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "1.5s", "100000s", "1d", "-1s", "1h1m1s1ms1s", "10 s"} {
		if _, err := ParseGatewayDuration(in); err == nil {
			t.Errorf("ParseGatewayDuration(%q) succeeded, want an error", in)
		}
	}
}

// TestDecodeRedirectStatusCodes: every redirect code Gateway API allows is
// accepted and kept.
func TestDecodeRedirectStatusCodes(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		doc := fmt.Sprintf("%s%s    filters: [{type: RequestRedirect, requestRedirect: {statusCode: %d}}]\n", routeHead, routeBody, code)
		objs, err := Decode(strings.NewReader(doc), "redirect.yaml")
		if err != nil {
			t.Errorf("statusCode %d refused: %v", code, err)
			continue
		}
		r := objs[0].(*gatewayv1.HTTPRoute)
		if got := r.Spec.Rules[0].Filters[0].RequestRedirect.StatusCode; got == nil || *got != code {
			t.Errorf("statusCode %d decoded as %v", code, got)
		}
	}
}
