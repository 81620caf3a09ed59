package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/ratelimit"
)

// Names and ports of the control plane objects. The Services' names and
// ports are what injected proxies and 'weft check' look for.
const (
	DefaultNamespace = "weft"
	DefaultImageRepo = "ghcr.io/weft-mesh/weft"

	ControlName   = "weft-control"
	IngressName   = "weft-ingress"
	RatelimitName = "weft-ratelimit"

	// DestinationService and IdentityService both front the control
	// plane's one gRPC port, as proxies address them separately.
	DestinationService = "weft-dst"
	IdentityService    = "weft-identity"

	// InjectorName names the webhook's Service, Secret and configuration.
	InjectorName = "weft-proxy-injector"
	WebhookPort  = 8443

	// RatelimitConfigMap holds the rate limit service's rules
	// (envoyproxy/ratelimit YAML, one domain per key), mounted at
	// RatelimitConfigDir; the service reloads them when the ConfigMap
	// changes.
	RatelimitConfigMap = "weft-ratelimit-config"
	RatelimitConfigDir = "/etc/weft/ratelimit"

	IssuerSecret    = "weft-identity-issuer"
	TrustRootsMap   = "weft-identity-trust-roots"
	TrustRootsKey   = "ca-bundle.crt"
	ControlPort     = 8086
	AdminPort       = 9990
	RatelimitPort   = 8081
	IngressHTTP     = 8080
	IngressHTTPS    = 8443
	ControlUID      = 65532 // distroless "nonroot"
	identityMount   = "/var/run/weft/identity"
	webhookMount    = "/var/run/weft/webhook"
	stateMount      = "/var/run/weft/state"
	partOfLabel     = "app.kubernetes.io/part-of"
	componentLabel  = "app.kubernetes.io/name"
	controlPlaneLbl = "linkerd.io/control-plane-ns"
)

// Identity is the mesh's trust anchors and issuer, PEM encoded, as
// Linkerd's --identity-trust-anchors-file, --identity-issuer-certificate-file
// and --identity-issuer-key-file take them.
type Identity struct {
	TrustAnchors      []byte
	IssuerCertificate []byte
	IssuerKey         []byte
}

// Options are the inputs of the control plane manifests. The same Options
// always render the same bytes.
type Options struct {
	// Image is the weft image every Deployment runs.
	Image string
	// InitImage is the proxy-init image (with iptables) the injector
	// adds; "" means Image + "-proxy-init" before the tag.
	InitImage string
	// Namespace is the control plane's namespace; "" means DefaultNamespace.
	Namespace string
	// Identity is stored in the issuer Secret and trust roots ConfigMap.
	Identity Identity
	// Webhook is the proxy injector's serving certificate.
	Webhook WebhookTLS
	// Version goes into the meshed ingress's linkerd.io/proxy-version
	// annotation, as 'weft inject --manual' writes it.
	Version string
}

// WebhookTLS is the injector webhook's serving certificate and key, and the
// CA bundle the API server trusts it with (the certificate itself when it
// is self-signed, as GenerateWebhookTLS makes it).
type WebhookTLS struct {
	CABundle    []byte
	Certificate []byte
	Key         []byte
}

func (o Options) initImage() string {
	if o.InitImage != "" {
		return o.InitImage
	}
	// repo[:tag] -> repo-proxy-init[:tag]; a registry port is before the
	// last slash.
	repo, tag := o.Image, ""
	if i := strings.LastIndex(o.Image, ":"); i > strings.LastIndex(o.Image, "/") {
		repo, tag = o.Image[:i], o.Image[i:]
	}
	return repo + "-proxy-init" + tag
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

// readRules let a component get, list and watch kinds (registered ones;
// others are skipped), grouped by API group in a stable order.
func readRules(kinds []api.Kind) []rbacv1.PolicyRule {
	return kindRules(kinds, "", []string{"get", "list", "watch"})
}

// kindRules is one rule per API group for the resources of kinds (with
// subresource appended when not empty).
func kindRules(kinds []api.Kind, subresource string, verbs []string) []rbacv1.PolicyRule {
	byGroup := map[string][]string{}
	for _, k := range kinds {
		ki := api.Lookup(k)
		if ki == nil {
			continue
		}
		res := ki.Plural
		if subresource != "" {
			res += "/" + subresource
		}
		byGroup[ki.Group] = append(byGroup[ki.Group], res)
	}
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var rules []rbacv1.PolicyRule
	for _, g := range groups {
		res := byGroup[g]
		sort.Strings(res)
		res = compactStrings(res)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: res, Verbs: verbs})
	}
	return rules
}

// allKinds is every registered kind: the control plane's store/kube may
// inform any of them.
func allKinds() []api.Kind {
	var out []api.Kind
	for _, ki := range api.Kinds() {
		out = append(out, ki.Kind)
	}
	return out
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// ingressRules are what the ingress reads (ingress.ReadKinds) and the
// route and Gateway status it writes (store/kube applies status
// server-side: a patch of the status subresource). It never writes specs.
func ingressRules() []rbacv1.PolicyRule {
	return append(readRules(ingress.ReadKinds()), kindRules(ingress.StatusKinds(), "status", []string{"get", "patch", "update"})...)
}

// Objects returns the control plane, ingress and rate limit service
// objects in apply order.
func Objects(o Options) []any {
	ns := o.namespace()
	meta := func(name string, component string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			partOfLabel: "weft", componentLabel: component, controlPlaneLbl: ns,
		}}
	}
	clusterMeta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: map[string]string{partOfLabel: "weft", controlPlaneLbl: ns}}
	}
	objs := []any{
		&corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns,
				Labels: map[string]string{partOfLabel: "weft", "linkerd.io/is-control-plane": "true", controlPlaneLbl: ns},
				// The control plane is not injected: it is what injects.
				Annotations: map[string]string{"linkerd.io/inject": "disabled"}},
		},
	}
	for _, c := range []string{ControlName, IngressName, RatelimitName} {
		objs = append(objs, &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(c, c)})
	}
	rbacType := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: kind}
	}
	binding := func(name, role, sa string) *rbacv1.ClusterRoleBinding {
		return &rbacv1.ClusterRoleBinding{
			TypeMeta:   rbacType("ClusterRoleBinding"),
			ObjectMeta: clusterMeta(name),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
		}
	}
	objs = append(objs,
		&rbacv1.ClusterRole{TypeMeta: rbacType("ClusterRole"), ObjectMeta: clusterMeta(ControlName), Rules: readRules(allKinds())},
		binding(ControlName, ControlName, ControlName),
		// TokenReview, to check proxies' service account tokens.
		binding(ControlName+"-auth-delegator", "system:auth-delegator", ControlName),
		&rbacv1.ClusterRole{TypeMeta: rbacType("ClusterRole"), ObjectMeta: clusterMeta(IngressName), Rules: ingressRules()},
		binding(IngressName, IngressName, IngressName),
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(TrustRootsMap, ControlName),
			Data:       map[string]string{TrustRootsKey: string(o.Identity.TrustAnchors)},
		},
		// The rate limit rules, for users to edit (kubectl edit cm): the
		// mounted files follow within a minute or so (the kubelet's
		// sync period) and the service reloads them; a bad edit is
		// logged and the last good rules stay.
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(RatelimitConfigMap, RatelimitName),
			Data:       map[string]string{ratelimit.WorkshopDomain + ".yaml": string(ratelimit.WorkshopConfig())},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: meta(IssuerSecret, ControlName),
			Type:       corev1.SecretTypeTLS,
			// Stored as stringData so the output stays readable and
			// diffable; the API server encodes it.
			StringData: map[string]string{
				"ca.crt":  string(o.Identity.TrustAnchors),
				"tls.crt": string(o.Identity.IssuerCertificate),
				"tls.key": string(o.Identity.IssuerKey),
			},
		},
	)

	controlArgs := []string{"control", "--store=kube",
		fmt.Sprintf("--addr=0.0.0.0:%d", ControlPort),
		fmt.Sprintf("--admin-addr=0.0.0.0:%d", AdminPort),
		"--state-dir=" + stateMount,
		"--identity-trust-anchors-file=" + identityMount + "/ca.crt",
		"--identity-issuer-certificate-file=" + identityMount + "/tls.crt",
		"--identity-issuer-key-file=" + identityMount + "/tls.key",
		fmt.Sprintf("--webhook-addr=0.0.0.0:%d", WebhookPort),
		"--webhook-tls-cert-file=" + webhookMount + "/tls.crt",
		"--webhook-tls-key-file=" + webhookMount + "/tls.key",
		"--proxy-image=" + o.Image,
		"--proxy-init-image=" + o.initImage(),
		// The injected proxies reach this control plane in its own
		// namespace, as the manually meshed ingress does.
		"--proxy-control-addr=" + o.InjectConfig().ControlAddr,
	}
	objs = append(objs,
		deployment(o, ns, ControlName, controlArgs,
			[]corev1.ContainerPort{{Name: "grpc", ContainerPort: ControlPort}, {Name: "webhook", ContainerPort: WebhookPort}},
			[]corev1.Volume{
				{Name: "identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: IssuerSecret}}},
				{Name: "webhook", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: InjectorName + "-tls"}}},
				{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
			[]corev1.VolumeMount{{Name: "identity", MountPath: identityMount, ReadOnly: true}, {Name: "webhook", MountPath: webhookMount, ReadOnly: true}, {Name: "state", MountPath: stateMount}},
			nil),
		ingressDeployment(o, ns),
		deployment(o, ns, RatelimitName, []string{"ratelimit",
			fmt.Sprintf("--addr=0.0.0.0:%d", RatelimitPort),
			fmt.Sprintf("--admin-addr=0.0.0.0:%d", AdminPort),
			"--config=" + RatelimitConfigDir,
		},
			[]corev1.ContainerPort{{Name: "grpc", ContainerPort: RatelimitPort}},
			[]corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: RatelimitConfigMap}}}}},
			[]corev1.VolumeMount{{Name: "config", MountPath: RatelimitConfigDir, ReadOnly: true}},
			nil),
		service(ns, DestinationService, ControlName, corev1.ServiceTypeClusterIP, []corev1.ServicePort{{Name: "grpc", Port: ControlPort, TargetPort: intstr.FromString("grpc")}}),
		service(ns, IdentityService, ControlName, corev1.ServiceTypeClusterIP, []corev1.ServicePort{{Name: "grpc", Port: ControlPort, TargetPort: intstr.FromString("grpc")}}),
		service(ns, IngressName, IngressName, corev1.ServiceTypeLoadBalancer, []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(IngressHTTP)},
			{Name: "https", Port: 443, TargetPort: intstr.FromInt32(IngressHTTPS)},
		}),
		service(ns, RatelimitName, RatelimitName, corev1.ServiceTypeClusterIP, []corev1.ServicePort{{Name: "grpc", Port: RatelimitPort, TargetPort: intstr.FromString("grpc")}}),
		service(ns, InjectorName, ControlName, corev1.ServiceTypeClusterIP, []corev1.ServicePort{{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook")}}),
		gatewayClass(clusterMeta(ingress.GatewayClassName)),
	)
	// The injector's certificate, then its configuration last, so that the
	// API server calls it only once everything it needs was applied.
	objs = append(objs, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(InjectorName+"-tls", ControlName),
		Type:       corev1.SecretTypeTLS,
		StringData: map[string]string{"tls.crt": string(o.Webhook.Certificate), "tls.key": string(o.Webhook.Key)},
	}, injectorConfig(o, ns, clusterMeta(InjectorName)))
	return objs
}

// gatewayClass is the GatewayClass "weft" that Gateways name to be served
// by the ingress. The ingress serves that class by name even without the
// object; it is created for tools and users that look for it (kubectl get
// gatewayclass, conformance suites), and the ingress marks it Accepted.
func gatewayClass(meta metav1.ObjectMeta) *gatewayv1.GatewayClass {
	desc := "Weft's ingress (weft-ingress)"
	return &gatewayv1.GatewayClass{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "GatewayClass"},
		ObjectMeta: meta,
		Spec:       gatewayv1.GatewayClassSpec{ControllerName: ingress.ControllerName, Description: &desc},
	}
}

// IngressSkipInboundPorts and IngressSkipOutboundPorts are the ingress
// pod's config.linkerd.io/skip-inbound-ports and skip-outbound-ports,
// which its proxy-init reads as every injected pod's.
//
// Inbound: the Listener ports the weft-ingress Service sends to and the
// admin port. Clients there come from outside the mesh (the load
// balancer), so the proxy's inbound would add a hop and hide their
// addresses from X-Forwarded-For, as Linkerd's Emissary guide skips 80
// and 443; and the kubelet's probes and scrapes reach the admin server
// whether or not the proxy is up.
//
// Outbound: the API server's ports, Linkerd's kubeAPIServerPorts
// (443,6443). The API server is not meshed, so its proxy would only pass
// TLS through as opaque TCP; going direct keeps the ingress reading its
// configuration (informers) while the control plane, which the proxy
// needs to resolve the API server's ClusterIP, is down or restarting.
// Upstreams on those ports (Mappings to https:// services) leave through
// the same door; the ingress originates their TLS itself.
var (
	IngressSkipInboundPorts  = fmt.Sprintf("%d,%d,%d", IngressHTTP, IngressHTTPS, AdminPort)
	IngressSkipOutboundPorts = "443,6443"
)

// ingressDeployment is the ingress, meshed as 'weft inject --manual'
// meshes a workload: it reads the API (--store=kube) and dials services
// by their cluster DNS names (--upstream=service); the iptables rules of
// its weft-init send those connections to its weft-proxy, which resolves
// the ClusterIP or name to the Service and speaks mTLS to meshed pods,
// with their ServiceProfiles' retries and timeouts and peak-EWMA
// balancing. The injector webhook skips the control plane's namespace,
// so the proxy is in the manifest, as 'linkerd install' ships its
// control plane with its proxies.
func ingressDeployment(o Options, ns string) *appsv1.Deployment {
	d := deployment(o, ns, IngressName, []string{"ingress", "--store=kube", "--address=0.0.0.0",
		fmt.Sprintf("--admin-addr=0.0.0.0:%d", AdminPort),
		"--namespace=" + ns,
		"--upstream=service",
		fmt.Sprintf("--ratelimit-addr=%s.%s.svc.cluster.local:%d", RatelimitName, ns, RatelimitPort),
	},
		[]corev1.ContainerPort{{Name: "http", ContainerPort: IngressHTTP}, {Name: "https", ContainerPort: IngressHTTPS}},
		nil, nil, map[string]string{
			inject.SkipInboundPortsAnnotation:  IngressSkipInboundPorts,
			inject.SkipOutboundPortsAnnotation: IngressSkipOutboundPorts,
		})
	if o.Image == "" {
		// Only kinds and names are wanted (uninstall, check's lists);
		// WriteControlPlane refuses an empty image.
		return d
	}
	meshed, err := mesh(d, o.InjectConfig())
	if err != nil {
		// The inputs are this file's constants and a non-empty image.
		panic(fmt.Sprintf("install: meshing the ingress: %v", err))
	}
	return meshed
}

// InjectConfig is what 'weft inject --manual' needs to mesh a workload
// the way the ingress is meshed: the install's images, control plane
// address and trust anchors.
func (o Options) InjectConfig() inject.Config {
	return inject.Config{
		Image:        o.Image,
		InitImage:    o.initImage(),
		Version:      o.Version,
		ControlAddr:  fmt.Sprintf("%s.%s.svc.cluster.local.:%d", DestinationService, o.namespace(), ControlPort),
		TrustAnchors: o.Identity.TrustAnchors,
	}
}

// mesh returns d with its pod template changed exactly as 'weft inject
// --manual' changes a Deployment (inject.Manual on the generic tree, so
// nothing is copied from internal/inject), converted back to the typed
// form install renders.
func mesh(d *appsv1.Deployment, cfg inject.Config) (*appsv1.Deployment, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("install: encoding Deployment %s: %w", d.Name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("install: encoding Deployment %s: %w", d.Name, err)
	}
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	meta, _ := tmpl["metadata"].(map[string]any)
	podSpec, _ := tmpl["spec"].(map[string]any)
	if meta == nil || podSpec == nil {
		return nil, fmt.Errorf("install: Deployment %s has no pod template", d.Name)
	}
	// The workload name is the Deployment's, as Transform passes it.
	if err := inject.Manual(meta, podSpec, cfg, d.Name); err != nil {
		return nil, fmt.Errorf("install: Deployment %s: %w", d.Name, err)
	}
	if b, err = json.Marshal(obj); err != nil {
		return nil, fmt.Errorf("install: encoding Deployment %s: %w", d.Name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a field appsv1 cannot carry would be lost
	out := new(appsv1.Deployment)
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("install: decoding the meshed Deployment %s: %w", d.Name, err)
	}
	return out, nil
}

func service(ns, name, component string, typ corev1.ServiceType, ports []corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			partOfLabel: "weft", componentLabel: component, controlPlaneLbl: ns,
		}},
		Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{componentLabel: component}, Ports: ports},
	}
}

func deployment(o Options, ns, name string, args []string, ports []corev1.ContainerPort, vols []corev1.Volume, mounts []corev1.VolumeMount, podAnnotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{partOfLabel: "weft", componentLabel: name, controlPlaneLbl: ns}
	replicas := int32(1)
	nonRoot, noEscalation, readOnly := true, false, true
	uid := int64(ControlUID)
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("admin")}}}
	}
	ports = append(ports, corev1.ContainerPort{Name: "admin", ContainerPort: AdminPort})
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{componentLabel: name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					Containers: []corev1.Container{{
						Name:  name,
						Image: o.Image,
						Args:  args,
						Ports: ports,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot: &nonRoot, RunAsUser: &uid,
							AllowPrivilegeEscalation: &noEscalation, ReadOnlyRootFilesystem: &readOnly,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						ReadinessProbe: probe("/ready"),
						LivenessProbe:  probe("/live"),
						VolumeMounts:   mounts,
					}},
					Volumes: vols,
				},
			},
		},
	}
}

// WriteObjects writes objects as multi-document YAML, leaving out the
// empty fields the Go types always print (creationTimestamp, status).
func WriteObjects(w io.Writer, objs []any) error {
	var buf bytes.Buffer
	for _, obj := range objs {
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("install: encoding: %w", err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("install: encoding: %w", err)
		}
		clean(m)
		y, err := yaml.Marshal(m)
		if err != nil {
			return fmt.Errorf("install: encoding: %w", err)
		}
		buf.WriteString("---\n")
		buf.Write(y)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// clean drops null creationTimestamps and empty status objects everywhere.
func clean(m map[string]any) {
	if m["creationTimestamp"] == nil {
		delete(m, "creationTimestamp")
	}
	if s, ok := m["status"].(map[string]any); ok && len(s) == 0 {
		delete(m, "status")
	}
	for _, v := range m {
		switch v := v.(type) {
		case map[string]any:
			clean(v)
		case []any:
			for _, e := range v {
				if em, ok := e.(map[string]any); ok {
					clean(em)
				}
			}
		}
	}
}

// WriteControlPlane writes 'weft install' output.
func WriteControlPlane(w io.Writer, o Options) error {
	if o.Image == "" {
		return fmt.Errorf("install: no image: pass --image")
	}
	return WriteObjects(w, Objects(o))
}

// gatewayCRDNames are the names of the vendored Gateway API CRDs, from their
// file names (GROUP_PLURAL.yaml).
func gatewayCRDNames() ([]string, error) {
	entries, err := gatewayCRDs.ReadDir("crds/gateway")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		group, plural, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".yaml"), "_")
		if !ok || group != GatewayGroup {
			return nil, fmt.Errorf("install: unexpected vendored CRD file %s", e.Name())
		}
		out = append(out, plural+"."+group)
	}
	return out, nil
}

// WriteUninstall writes the objects of 'weft install' (and, with crds, of
// 'weft install --crds'), kind and name only, in reverse order, as a List
// 'kubectl delete -f -' accepts.
func WriteUninstall(w io.Writer, o Options, crds bool) error {
	var items []any
	for _, obj := range Objects(o) {
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("install: encoding: %w", err)
		}
		var full struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace,omitempty"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(b, &full); err != nil {
			return fmt.Errorf("install: encoding: %w", err)
		}
		items = append(items, full)
	}
	if crds {
		var names []string
		for _, ki := range CRDKinds() {
			names = append(names, ki.Plural+"."+ki.Group)
		}
		gw, err := gatewayCRDNames()
		if err != nil {
			return err
		}
		names = append(names, gw...)
		for _, n := range names {
			items = append(items, map[string]any{
				"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
				"metadata": map[string]any{"name": n},
			})
		}
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		return fmt.Errorf("install: encoding: %w", err)
	}
	_, err = w.Write(b)
	return err
}
