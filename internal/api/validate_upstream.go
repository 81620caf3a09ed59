package api

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Validation of upstream kinds covers what a mesh user gets wrong and what
// Weft relies on; it is not a copy of the Kubernetes API server's.

func validateNamespace(o Object) FieldErrors {
	ns := o.(*corev1.Namespace)
	var errs FieldErrors
	validateDNSLabelName(ns.Name, &errs)
	validateMeshAnnotations("metadata.annotations", ns.Annotations, false, false, &errs)
	return errs
}

func validateService(o Object) FieldErrors {
	svc := o.(*corev1.Service)
	var errs FieldErrors
	validateDNSLabelName(svc.Name, &errs)
	validateMeshAnnotations("metadata.annotations", svc.Annotations, true, true, &errs)
	switch svc.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		if len(svc.Spec.Ports) == 0 {
			errs.Add("spec.ports", "required: at least one port")
		}
	case corev1.ServiceTypeExternalName:
		if svc.Spec.ExternalName == "" {
			errs.Add("spec.externalName", "required for type ExternalName")
		}
	default:
		errs.Add("spec.type", "unknown type %q; use ClusterIP, NodePort, LoadBalancer or ExternalName", svc.Spec.Type)
	}
	names := map[string]bool{}
	ports := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		if p.Name == "" && len(svc.Spec.Ports) > 1 {
			errs.Add(pp+".name", "required when a Service has more than one port")
		} else if p.Name != "" {
			if msgs := validation.IsDNS1123Label(p.Name); len(msgs) > 0 {
				errs.Add(pp+".name", "invalid name %q: %s", p.Name, strings.Join(msgs, "; "))
			}
			if names[p.Name] {
				errs.Add(pp+".name", "duplicate port name %q", p.Name)
			}
			names[p.Name] = true
		}
		switch {
		case p.Port == 0:
			errs.Add(pp+".port", "required")
		case p.Port < 0 || p.Port > 65535:
			errs.Add(pp+".port", "%d is not a port number (1-65535)", p.Port)
		}
		validateProtocol(pp+".protocol", p.Protocol, &errs)
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if ports[key] && p.Port != 0 {
			errs.Add(pp+".port", "duplicate port %d", p.Port)
		}
		ports[key] = true
		if p.TargetPort.Type == intstr.String || p.TargetPort.IntVal != 0 {
			validatePortRef(pp+".targetPort", p.TargetPort, false, &errs)
		}
		if p.NodePort < 0 || p.NodePort > 65535 {
			errs.Add(pp+".nodePort", "%d is not a port number", p.NodePort)
		}
	}
	validateLabels("spec.selector", svc.Spec.Selector, &errs)
	return errs
}

func validateDeployment(o Object) FieldErrors {
	d := o.(*appsv1.Deployment)
	var errs FieldErrors
	validateMeshAnnotations("metadata.annotations", d.Annotations, false, false, &errs)
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		errs.Add("spec.replicas", "must not be negative")
	}
	tmplLabels := d.Spec.Template.Labels
	validateLabels("spec.template.metadata.labels", tmplLabels, &errs)
	validateMeshAnnotations("spec.template.metadata.annotations", d.Spec.Template.Annotations, false, false, &errs)
	switch sel := d.Spec.Selector; {
	case sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0):
		errs.Add("spec.selector", "required: a selector matching spec.template.metadata.labels")
	default:
		if ok := validateSelector("spec.selector", sel, &errs); ok {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err == nil && !s.Matches(labels.Set(tmplLabels)) {
				errs.Add("spec.template.metadata.labels", "do not match spec.selector (%s); the Deployment would own no pods", s)
			}
		}
	}
	validatePodSpec("spec.template.spec", &d.Spec.Template.Spec, &errs)
	if s := d.Spec.Strategy.Type; s != "" && s != appsv1.RollingUpdateDeploymentStrategyType && s != appsv1.RecreateDeploymentStrategyType {
		errs.Add("spec.strategy.type", "unknown strategy %q; use RollingUpdate or Recreate", s)
	}
	return errs
}

func validatePodSpec(path string, spec *corev1.PodSpec, errs *FieldErrors) {
	if len(spec.Containers) == 0 {
		errs.Add(path+".containers", "required: at least one container")
	}
	containerNames := map[string]bool{}
	portNames := map[string]bool{}
	check := func(field string, cs []corev1.Container) {
		for i, c := range cs {
			cp := fmt.Sprintf("%s.%s[%d]", path, field, i)
			if c.Name == "" {
				errs.Add(cp+".name", "required")
			} else if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
				errs.Add(cp+".name", "invalid name %q: %s", c.Name, strings.Join(msgs, "; "))
			} else if containerNames[c.Name] {
				errs.Add(cp+".name", "duplicate container name %q", c.Name)
			}
			containerNames[c.Name] = true
			for j, p := range c.Ports {
				pp := fmt.Sprintf("%s.ports[%d]", cp, j)
				if p.ContainerPort < 1 || p.ContainerPort > 65535 {
					errs.Add(pp+".containerPort", "%d is not a port number (1-65535)", p.ContainerPort)
				}
				if p.Name != "" {
					if msg := portNameProblem(p.Name); msg != "" {
						errs.Add(pp+".name", "invalid port name %q: %s", p.Name, msg)
					} else if portNames[p.Name] {
						errs.Add(pp+".name", "duplicate port name %q in the pod", p.Name)
					}
					portNames[p.Name] = true
				}
				validateProtocol(pp+".protocol", p.Protocol, errs)
			}
			for j, e := range c.Env {
				if e.Name == "" {
					errs.Add(fmt.Sprintf("%s.env[%d].name", cp, j), "required")
				}
			}
		}
	}
	check("initContainers", spec.InitContainers)
	check("containers", spec.Containers)
	if sa := spec.ServiceAccountName; sa != "" {
		if msgs := validation.IsDNS1123Subdomain(sa); len(msgs) > 0 {
			errs.Add(path+".serviceAccountName", "invalid name %q: %s", sa, strings.Join(msgs, "; "))
		}
	}
}

func validateProtocol(path string, p corev1.Protocol, errs *FieldErrors) {
	switch p {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		errs.Add(path, "unknown protocol %q; use TCP, UDP or SCTP", p)
	}
}

// portNameProblem checks a named port as Kubernetes does (IANA_SVC_NAME):
// at most 15 lower-case letters, digits and '-', with at least one letter.
func portNameProblem(name string) string {
	msgs := validation.IsValidPortName(name)
	return strings.Join(msgs, "; ")
}

// validatePortRef checks a port given by number or by name.
func validatePortRef(path string, p intstr.IntOrString, required bool, errs *FieldErrors) {
	if p.Type == intstr.String {
		if p.StrVal == "" {
			if required {
				errs.Add(path, "required")
			}
			return
		}
		if _, err := strconv.Atoi(p.StrVal); err == nil {
			errs.Add(path, "%q is a string; write the port number without quotes, or use a port name", p.StrVal)
		} else if msg := portNameProblem(p.StrVal); msg != "" {
			errs.Add(path, "invalid port name %q: %s", p.StrVal, msg)
		}
		return
	}
	switch {
	case p.IntVal == 0 && required:
		errs.Add(path, "required: a port number or name")
	case p.IntVal < 0 || p.IntVal > 65535 || (p.IntVal == 0 && !required):
		errs.Add(path, "%d is not a port number (1-65535)", p.IntVal)
	}
}

// validateMetadata checks what every kind's metadata must satisfy: the
// name is a DNS subdomain, the namespace a DNS label, labels are valid.
func validateMetadata(o Object, errs *FieldErrors) {
	if name := o.GetName(); name != "" {
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			errs.Add("metadata.name", "invalid name %q: %s", name, strings.Join(msgs, "; "))
		}
	}
	if ns := o.GetNamespace(); ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs.Add("metadata.namespace", "invalid namespace %q: %s", ns, strings.Join(msgs, "; "))
		}
	}
	validateLabels("metadata.labels", o.GetLabels(), errs)
}

// validateDNSLabelName adds the stricter rule of kinds whose name becomes
// one label of a DNS name (Namespace, Service): no dots, at most 63
// characters. A name that is not even a subdomain is already reported.
func validateDNSLabelName(name string, errs *FieldErrors) {
	if name == "" || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		errs.Add("metadata.name", "invalid name %q: %s (it becomes part of DNS names)", name, strings.Join(msgs, "; "))
	}
}

func validateLabels(path string, l map[string]string, errs *FieldErrors) {
	for _, k := range sortedKeys(l) {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs.Add(path+"["+k+"]", "invalid label key: %s", strings.Join(msgs, "; "))
		}
		if msgs := validation.IsValidLabelValue(l[k]); len(msgs) > 0 {
			errs.Add(path+"["+k+"]", "invalid label value %q: %s", l[k], strings.Join(msgs, "; "))
		}
	}
}

// validateSelector checks a label selector; it reports whether it is valid.
// A nil selector is valid.
func validateSelector(path string, sel *metav1.LabelSelector, errs *FieldErrors) bool {
	if sel == nil {
		return true
	}
	n := len(*errs)
	validateLabels(path+".matchLabels", sel.MatchLabels, errs)
	for i, e := range sel.MatchExpressions {
		ep := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		if e.Key == "" {
			errs.Add(ep+".key", "required")
		} else if msgs := validation.IsQualifiedName(e.Key); len(msgs) > 0 {
			errs.Add(ep+".key", "invalid label key %q: %s", e.Key, strings.Join(msgs, "; "))
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				errs.Add(ep+".values", "required for operator %s", e.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) > 0 {
				errs.Add(ep+".values", "must be empty for operator %s", e.Operator)
			}
		case "":
			errs.Add(ep+".operator", "required: In, NotIn, Exists or DoesNotExist")
		default:
			errs.Add(ep+".operator", "unknown operator %q; use In, NotIn, Exists or DoesNotExist", e.Operator)
		}
	}
	return len(*errs) == n
}

// gep2257 is Gateway API's duration format (GEP-2257): up to four
// integer+unit parts, units h, m, s, ms.
var gep2257 = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// ParseGatewayDuration parses a Gateway API duration (GEP-2257), such as
// "10s", "500ms" or "1h30m": one to four parts of up to five digits and a
// unit h, m, s or ms. "0s" means no timeout.
func ParseGatewayDuration(s string) (time.Duration, error) {
	if !gep2257.MatchString(s) {
		return 0, fmt.Errorf("invalid duration %q: want up to four parts of a number and a unit h, m, s or ms, such as 10s or 1m30s (GEP-2257)", s)
	}
	return ParseDuration(s)
}

// maxBackendWeight is Gateway API's maximum backendRef weight.
const maxBackendWeight = 1000000

func validateHTTPRoute(o Object) FieldErrors {
	r := o.(*gatewayv1.HTTPRoute)
	linkerdGroup := r.GroupVersionKind().Group == KindPolicyHTTPRoute.Group
	var errs FieldErrors
	validateMeshAnnotations("metadata.annotations", r.Annotations, true, false, &errs)
	validateParentRefs(r.Spec.ParentRefs, &errs)
	validateHostnames(r.Spec.Hostnames, &errs)
	for i, rule := range r.Spec.Rules {
		rp := fmt.Sprintf("spec.rules[%d]", i)
		for j, m := range rule.Matches {
			mp := fmt.Sprintf("%s.matches[%d]", rp, j)
			if m.Path != nil {
				validatePathMatch(mp+".path", m.Path, &errs)
			}
			for k, h := range m.Headers {
				validateValueMatch(fmt.Sprintf("%s.headers[%d]", mp, k), string(h.Name), h.Type, h.Value, &errs)
			}
			for k, q := range m.QueryParams {
				validateValueMatch(fmt.Sprintf("%s.queryParams[%d]", mp, k), string(q.Name), (*gatewayv1.HeaderMatchType)(q.Type), q.Value, &errs)
			}
			if m.Method != nil {
				switch *m.Method {
				case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
				default:
					errs.Add(mp+".method", "unknown method %q; use an upper-case HTTP method such as GET", *m.Method)
				}
			}
		}
		for j, f := range rule.Filters {
			fp := fmt.Sprintf("%s.filters[%d]", rp, j)
			validateHTTPFilter(fp, f, &errs)
			if linkerdGroup {
				switch f.Type {
				case gatewayv1.HTTPRouteFilterRequestMirror, gatewayv1.HTTPRouteFilterURLRewrite, gatewayv1.HTTPRouteFilterExtensionRef:
					errs.Add(fp+".type", "%s is not supported by policy.linkerd.io HTTPRoutes; use RequestHeaderModifier, ResponseHeaderModifier or RequestRedirect", f.Type)
				}
			}
		}
		for j, b := range rule.BackendRefs {
			validateBackendRef(fmt.Sprintf("%s.backendRefs[%d]", rp, j), b.BackendRef, &errs)
		}
		if t := rule.Timeouts; t != nil {
			var req, backend time.Duration
			var reqOK, backendOK bool
			if t.Request != nil {
				d, err := ParseGatewayDuration(string(*t.Request))
				if err != nil {
					errs.Add(rp+".timeouts.request", "%v", err)
				}
				req, reqOK = d, err == nil
			}
			if t.BackendRequest != nil {
				d, err := ParseGatewayDuration(string(*t.BackendRequest))
				if err != nil {
					errs.Add(rp+".timeouts.backendRequest", "%v", err)
				}
				backend, backendOK = d, err == nil
			}
			if reqOK && backendOK && req != 0 && (backend == 0 || backend > req) {
				errs.Add(rp+".timeouts.backendRequest", "%s exceeds the request timeout %s", *t.BackendRequest, *t.Request)
			}
		}
		if rt := rule.Retry; rt != nil {
			if rt.Attempts != nil && *rt.Attempts < 0 {
				errs.Add(rp+".retry.attempts", "must not be negative")
			}
			if rt.Backoff != nil {
				if _, err := ParseGatewayDuration(string(*rt.Backoff)); err != nil {
					errs.Add(rp+".retry.backoff", "%v", err)
				}
			}
			for j, c := range rt.Codes {
				if c < 400 || c > 599 {
					errs.Add(fmt.Sprintf("%s.retry.codes[%d]", rp, j), "%d is not an error status (400-599)", c)
				}
			}
		}
	}
	return errs
}

func validateGRPCRoute(o Object) FieldErrors {
	r := o.(*gatewayv1.GRPCRoute)
	var errs FieldErrors
	validateMeshAnnotations("metadata.annotations", r.Annotations, true, false, &errs)
	validateParentRefs(r.Spec.ParentRefs, &errs)
	validateHostnames(r.Spec.Hostnames, &errs)
	for i, rule := range r.Spec.Rules {
		rp := fmt.Sprintf("spec.rules[%d]", i)
		for j, m := range rule.Matches {
			mp := fmt.Sprintf("%s.matches[%d]", rp, j)
			if mm := m.Method; mm != nil {
				if mm.Service == nil && mm.Method == nil {
					errs.Add(mp+".method", "set service, method or both")
				}
				switch t := ptrOr(mm.Type, gatewayv1.GRPCMethodMatchExact); t {
				case gatewayv1.GRPCMethodMatchExact:
				case gatewayv1.GRPCMethodMatchRegularExpression:
					for _, s := range []*string{mm.Service, mm.Method} {
						if s != nil {
							if _, err := regexp.Compile(*s); err != nil {
								errs.Add(mp+".method", "invalid regular expression %q: %v", *s, err)
							}
						}
					}
				default:
					errs.Add(mp+".method.type", "unknown match type %q; use Exact or RegularExpression", t)
				}
			}
			for k, h := range m.Headers {
				validateValueMatch(fmt.Sprintf("%s.headers[%d]", mp, k), string(h.Name), (*gatewayv1.HeaderMatchType)(h.Type), h.Value, &errs)
			}
		}
		for j, b := range rule.BackendRefs {
			validateBackendRef(fmt.Sprintf("%s.backendRefs[%d]", rp, j), b.BackendRef, &errs)
		}
	}
	return errs
}

func validateGateway(o Object) FieldErrors {
	g := o.(*gatewayv1.Gateway)
	var errs FieldErrors
	if g.Spec.GatewayClassName == "" {
		errs.Add("spec.gatewayClassName", "required")
	}
	if len(g.Spec.Listeners) == 0 {
		errs.Add("spec.listeners", "required: at least one listener")
	}
	names := map[gatewayv1.SectionName]bool{}
	for i, l := range g.Spec.Listeners {
		lp := fmt.Sprintf("spec.listeners[%d]", i)
		if l.Name == "" {
			errs.Add(lp+".name", "required")
		} else if names[l.Name] {
			errs.Add(lp+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if l.Port < 1 || l.Port > 65535 {
			errs.Add(lp+".port", "%d is not a port number (1-65535)", l.Port)
		}
		switch l.Protocol {
		case gatewayv1.HTTPProtocolType, gatewayv1.HTTPSProtocolType, gatewayv1.TLSProtocolType, gatewayv1.TCPProtocolType, gatewayv1.UDPProtocolType:
		case "":
			errs.Add(lp+".protocol", "required: HTTP, HTTPS, TLS, TCP or UDP")
		default:
			errs.Add(lp+".protocol", "unknown protocol %q; use HTTP, HTTPS, TLS, TCP or UDP", l.Protocol)
		}
	}
	return errs
}

// controllerNameRE is the pattern the GatewayClass CRD enforces on
// spec.controllerName: a domain-prefixed path ("weft.io/gateway-controller").
var controllerNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$`)

func validateGatewayClass(o Object) FieldErrors {
	c := o.(*gatewayv1.GatewayClass)
	var errs FieldErrors
	switch cn := string(c.Spec.ControllerName); {
	case cn == "":
		errs.Add("spec.controllerName", "required: the controller that serves this class, such as weft.io/gateway-controller")
	case len(cn) > 253 || !controllerNameRE.MatchString(cn):
		errs.Add("spec.controllerName", "%q is not a domain-prefixed path (example.com/controller)", cn)
	}
	if c.Spec.Description != nil && len(*c.Spec.Description) > 64 {
		errs.Add("spec.description", "%d characters; at most 64", len(*c.Spec.Description))
	}
	return errs
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func validateParentRefs(refs []gatewayv1.ParentReference, errs *FieldErrors) {
	if len(refs) == 0 {
		errs.Add("spec.parentRefs", "required: a Service (group core, with a port) for mesh routing, or a Gateway")
	}
	for i, p := range refs {
		pp := fmt.Sprintf("spec.parentRefs[%d]", i)
		if p.Name == "" {
			errs.Add(pp+".name", "required")
		}
		if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
			errs.Add(pp+".port", "%d is not a port number (1-65535)", *p.Port)
		}
		group := string(ptrOr(p.Group, gatewayv1.GroupName))
		kind := string(ptrOr(p.Kind, "Gateway"))
		switch {
		case (group == "" || group == "core") && kind == "Service":
		case group == gatewayv1.GroupName && kind == "Gateway":
		case group == "policy.linkerd.io" && kind == "Server":
		case group == "policy.linkerd.io" && kind == "EgressNetwork":
		case kind == "Service" && p.Group == nil:
			errs.Add(pp+".group", "required for a Service parent: set group: core (a parentRef's group defaults to gateway.networking.k8s.io)")
		default:
			errs.Add(pp, "cannot attach to %s; use a Service (group core), a Gateway, a Server or an EgressNetwork", Kind{Group: group, Kind: kind})
		}
	}
}

func validateHostnames(hosts []gatewayv1.Hostname, errs *FieldErrors) {
	for i, h := range hosts {
		name := strings.TrimPrefix(string(h), "*.")
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 || strings.Contains(name, "*") {
			errs.Add(fmt.Sprintf("spec.hostnames[%d]", i), "invalid hostname %q: want a DNS name, optionally starting with \"*.\"", h)
		}
	}
}

func validatePathMatch(path string, m *gatewayv1.HTTPPathMatch, errs *FieldErrors) {
	t := ptrOr(m.Type, gatewayv1.PathMatchPathPrefix)
	v := ptrOr(m.Value, "/")
	switch t {
	case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
		if !strings.HasPrefix(v, "/") {
			errs.Add(path+".value", "%q must start with /", v)
		}
		if strings.ContainsAny(v, "?#") || strings.Contains(v, "//") || strings.Contains(v, "/./") || strings.Contains(v, "/../") {
			errs.Add(path+".value", "%q must be a clean path without ?, #, // or dot segments", v)
		}
	case gatewayv1.PathMatchRegularExpression:
		if _, err := regexp.Compile(v); err != nil {
			errs.Add(path+".value", "invalid regular expression %q: %v", v, err)
		}
	default:
		errs.Add(path+".type", "unknown match type %q; use Exact, PathPrefix or RegularExpression", t)
	}
}

func validateValueMatch(path, name string, typ *gatewayv1.HeaderMatchType, value string, errs *FieldErrors) {
	if name == "" {
		errs.Add(path+".name", "required")
	}
	switch t := ptrOr(typ, gatewayv1.HeaderMatchExact); t {
	case gatewayv1.HeaderMatchExact:
	case gatewayv1.HeaderMatchRegularExpression:
		if _, err := regexp.Compile(value); err != nil {
			errs.Add(path+".value", "invalid regular expression %q: %v", value, err)
		}
	default:
		errs.Add(path+".type", "unknown match type %q; use Exact or RegularExpression", t)
	}
}

func validateHTTPFilter(path string, f gatewayv1.HTTPRouteFilter, errs *FieldErrors) {
	set := map[gatewayv1.HTTPRouteFilterType]bool{
		gatewayv1.HTTPRouteFilterRequestHeaderModifier:  f.RequestHeaderModifier != nil,
		gatewayv1.HTTPRouteFilterResponseHeaderModifier: f.ResponseHeaderModifier != nil,
		gatewayv1.HTTPRouteFilterRequestMirror:          f.RequestMirror != nil,
		gatewayv1.HTTPRouteFilterRequestRedirect:        f.RequestRedirect != nil,
		gatewayv1.HTTPRouteFilterURLRewrite:             f.URLRewrite != nil,
		gatewayv1.HTTPRouteFilterExtensionRef:           f.ExtensionRef != nil,
	}
	isSet, known := set[f.Type]
	if !known {
		var names []string
		for t := range set {
			names = append(names, string(t))
		}
		sort.Strings(names)
		errs.Add(path+".type", "unknown filter %q; use one of %s", f.Type, strings.Join(names, ", "))
		return
	}
	field := strings.ToLower(string(f.Type[:1])) + string(f.Type[1:])
	if f.Type == gatewayv1.HTTPRouteFilterURLRewrite {
		field = "urlRewrite"
	}
	if !isSet {
		errs.Add(path+"."+field, "required for filter type %s", f.Type)
	}
	for t, on := range set {
		if on && t != f.Type {
			errs.Add(path, "has configuration for %s but its type is %s", t, f.Type)
		}
	}
	if r := f.RequestRedirect; r != nil {
		// The redirect codes Gateway API allows (v1.1 added 303, 307 and
		// 308; 307 and 308 keep the method and body).
		if c := r.StatusCode; c != nil {
			switch *c {
			case 301, 302, 303, 307, 308:
			default:
				errs.Add(path+".requestRedirect.statusCode", "%d is not a redirect code; use 301, 302, 303, 307 or 308", *c)
			}
		}
		if r.Port != nil && (*r.Port < 1 || *r.Port > 65535) {
			errs.Add(path+".requestRedirect.port", "%d is not a port number (1-65535)", *r.Port)
		}
	}
}

func validateBackendRef(path string, b gatewayv1.BackendRef, errs *FieldErrors) {
	if b.Name == "" {
		errs.Add(path+".name", "required")
	}
	if b.Weight != nil && (*b.Weight < 0 || *b.Weight > maxBackendWeight) {
		errs.Add(path+".weight", "%d is out of range 0-%d", *b.Weight, maxBackendWeight)
	}
	kind := string(ptrOr(b.Kind, "Service"))
	group := string(ptrOr(b.Group, ""))
	if kind == "Service" && (group == "" || group == "core") {
		if b.Port == nil {
			errs.Add(path+".port", "required when referring to a Service")
		} else if *b.Port < 1 || *b.Port > 65535 {
			errs.Add(path+".port", "%d is not a port number (1-65535)", *b.Port)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
