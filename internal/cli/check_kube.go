package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sort"
	"strings"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/inject"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/store/kube"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// minKubeVersion is the oldest API server 'weft check' accepts: what
// Linkerd requires, and every API Weft uses (EndpointSlices v1, projected
// service account tokens, admissionregistration v1) is GA there.
var minKubeVersion = utilversion.MustParseGeneric("1.22.0")

// trustAnchorsEnv is the injected proxy's trust anchors variable
// (internal/inject sets it from --identity-trust-anchors-file or the
// control plane's anchors).
const trustAnchorsEnv = "WEFT_PROXY_IDENTITY_TRUST_ANCHORS"

// crdGVR is where CustomResourceDefinitions are read (through the dynamic
// client: Weft does not depend on the apiextensions clientset).
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// clusterState is what the cluster checks learn and share as they run.
type clusterState struct {
	// cfg and cfgErr are the result of finding the cluster; the first
	// check reports cfgErr.
	cfg    *rest.Config
	cfgErr error
	source string // where cfg came from, for the header

	namespace      string // the control plane's
	proxyNamespace string // --proxy -n; "" means every namespace

	client    kubernetes.Interface
	dyn       dynamic.Interface
	reachable bool          // the API server answered
	version   *version.Info // what it answered
	installed bool          // the control plane namespace exists

	trustRoots []*x509.Certificate // the trust roots ConfigMap's
	pods       []corev1.Pod        // meshed pods (--proxy)
}

// clusterConfig finds the cluster as 'weft control --store=kube' does
// (kube.RESTConfig: --kubeconfig, else $KUBECONFIG, else in-cluster; with
// --context, clientcmd's loading rules) and says where from, for the
// report's header.
func clusterConfig(path, kubeContext string) (*rest.Config, string, error) {
	source := "in-cluster configuration"
	switch {
	case path != "":
		source = "kubeconfig " + path
	case os.Getenv("KUBECONFIG") != "":
		source = "kubeconfig $KUBECONFIG=" + os.Getenv("KUBECONFIG")
	}
	if kubeContext != "" {
		if path == "" && os.Getenv("KUBECONFIG") == "" {
			source = "kubeconfig ~/.kube/config"
		}
		source += ", context " + kubeContext
	}
	cfg, err := kube.RESTConfig(path, kubeContext)
	return cfg, source, err
}

// clusterChecks lists the checks of 'weft check' in cluster mode: before
// installing (pre), after (the default), and of the data plane too (proxy).
func clusterChecks(pre, proxy bool) []checker {
	list := kubeAPIChecks()
	if pre {
		return append(list, preInstallChecks()...)
	}
	list = append(list, installedChecks()...)
	if proxy {
		list = append(list, dataPlaneChecks()...)
	}
	return list
}

// needAPI runs f only once the API server has answered: without it every
// later check would fail with the same connection error.
func needAPI(f func(context.Context, *checkState) error) func(context.Context, *checkState) error {
	return func(ctx context.Context, s *checkState) error {
		if !s.cluster.reachable {
			return errSkip
		}
		return f(ctx, s)
	}
}

// needInstalled runs f only if the control plane namespace exists (its
// own check says when it does not).
func needInstalled(f func(context.Context, *checkState) error) func(context.Context, *checkState) error {
	return needAPI(func(ctx context.Context, s *checkState) error {
		if !s.cluster.installed {
			return errSkip
		}
		return f(ctx, s)
	})
}

func kubeAPIChecks() []checker {
	return []checker{
		{"kubernetes-api", "can initialize the client", "k8s-api-client", true, func(_ context.Context, s *checkState) error {
			c := s.cluster
			if c.cfgErr != nil {
				return c.cfgErr
			}
			cfg := rest.CopyConfig(c.cfg)
			cfg.Timeout = s.timeout
			var err error
			if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
				return err
			}
			c.dyn, err = dynamic.NewForConfig(cfg)
			return err
		}},
		{"kubernetes-api", "can query the Kubernetes API", "k8s-api-query", true, func(_ context.Context, s *checkState) error {
			info, err := s.cluster.client.Discovery().ServerVersion()
			if err != nil {
				return fmt.Errorf("API server at %s: %w", s.cluster.cfg.Host, err)
			}
			s.cluster.reachable, s.cluster.version = true, info
			return nil
		}},
		{"kubernetes-version", "is running the minimum Kubernetes API version", "k8s-version", false, needAPI(func(_ context.Context, s *checkState) error {
			info := s.cluster.version
			v, err := utilversion.ParseGeneric(info.GitVersion)
			if err != nil {
				return fmt.Errorf("API server reports version %q: %w", info.GitVersion, err)
			}
			if v.LessThan(minKubeVersion) {
				return fmt.Errorf("Kubernetes %s is older than %s, the oldest Weft supports; upgrade the cluster", info.GitVersion, minKubeVersion)
			}
			return nil
		})},
	}
}

// installResource is a kind of object 'weft install' (or --crds) creates,
// for the access reviews of --pre.
type installResource struct {
	kind, group, resource string
	namespaced            bool
}

// installResources are the kinds 'weft install --crds' and 'weft install'
// create (a test keeps the list in step with install.Objects).
var installResources = []installResource{
	{"Namespace", "", "namespaces", false},
	{"ClusterRole", "rbac.authorization.k8s.io", "clusterroles", false},
	{"ClusterRoleBinding", "rbac.authorization.k8s.io", "clusterrolebindings", false},
	{"CustomResourceDefinition", "apiextensions.k8s.io", "customresourcedefinitions", false},
	{"MutatingWebhookConfiguration", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", false},
	{"GatewayClass", "gateway.networking.k8s.io", "gatewayclasses", false},
	{"ServiceAccount", "", "serviceaccounts", true},
	{"Deployment", "apps", "deployments", true},
	{"Service", "", "services", true},
	{"Secret", "", "secrets", true},
	{"ConfigMap", "", "configmaps", true},
}

// podSecurityEnforce is the Pod Security admission label; "baseline" and
// "restricted" both refuse NET_ADMIN and NET_RAW, which proxy-init needs.
const podSecurityEnforce = "pod-security.kubernetes.io/enforce"

func preInstallChecks() []checker {
	list := []checker{
		{"pre-kubernetes-setup", "control plane namespace does not already exist", "pre-ns", false, needAPI(func(ctx context.Context, s *checkState) error {
			ns := s.cluster.namespace
			_, err := s.cluster.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case err != nil:
				return fmt.Errorf("cannot tell whether namespace %s exists: %w", ns, err)
			}
			return fmt.Errorf("namespace %s already exists: Weft may be installed already; check it with 'weft check', or remove it with 'weft uninstall | kubectl delete -f -'", ns)
		})},
	}
	for _, r := range installResources {
		list = append(list, checker{"pre-kubernetes-setup", "can create " + plural(r.kind), "pre-can-create", false, needAPI(func(ctx context.Context, s *checkState) error {
			return canCreate(ctx, s.cluster, r)
		})})
	}
	// The control plane's binding to system:auth-delegator (TokenReview)
	// is refused by RBAC's escalation check unless the installer holds
	// that role's rights or may bind it.
	list = append(list, checker{"pre-kubernetes-setup", "can bind the system:auth-delegator ClusterRole", "pre-can-create", false, needAPI(func(ctx context.Context, s *checkState) error {
		return canBindAuthDelegator(ctx, s.cluster)
	})})
	return append(list, checker{"pre-kubernetes-capability", "proxy-init can run with NET_ADMIN and NET_RAW", "pre-net-admin", false, needAPI(checkPodSecurity)})
}

// canBindAuthDelegator asks whether the caller may bind the
// system:auth-delegator ClusterRole ('kubectl auth can-i bind
// clusterrole/system:auth-delegator'), or holds what it grants (creating
// TokenReviews and SubjectAccessReviews), which RBAC accepts instead.
func canBindAuthDelegator(ctx context.Context, c *clusterState) error {
	rev, err := accessReview(ctx, c, &authorizationv1.ResourceAttributes{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "system:auth-delegator"})
	if err != nil {
		return fmt.Errorf("asking whether system:auth-delegator may be bound: %w", err)
	}
	if rev.Allowed {
		return nil
	}
	for _, r := range []authorizationv1.ResourceAttributes{
		{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"},
		{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"},
	} {
		rev, err := accessReview(ctx, c, &r)
		if err != nil {
			return fmt.Errorf("asking whether system:auth-delegator may be bound: %w", err)
		}
		if !rev.Allowed {
			return fmt.Errorf("not allowed to bind clusterrole system:auth-delegator, nor to %s %s (the control plane checks proxies' tokens with it); 'weft install' needs a cluster administrator's rights", r.Verb, r.Resource)
		}
	}
	return nil
}

// accessReview asks the API server whether the caller may do what attrs
// describe, as 'kubectl auth can-i' does.
func accessReview(ctx context.Context, c *clusterState, attrs *authorizationv1.ResourceAttributes) (authorizationv1.SubjectAccessReviewStatus, error) {
	rev, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
		&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}, metav1.CreateOptions{})
	if err != nil {
		return authorizationv1.SubjectAccessReviewStatus{}, err
	}
	return rev.Status, nil
}

// canCreate asks the API server whether the caller may create r, as
// 'kubectl auth can-i create' does.
func canCreate(ctx context.Context, c *clusterState, r installResource) error {
	attrs := &authorizationv1.ResourceAttributes{Verb: "create", Group: r.group, Resource: r.resource}
	where := "cluster-wide"
	if r.namespaced {
		attrs.Namespace = c.namespace
		where = "in namespace " + c.namespace
	}
	rev, err := accessReview(ctx, c, attrs)
	if err != nil {
		return fmt.Errorf("asking whether %s may be created: %w", r.resource, err)
	}
	if !rev.Allowed {
		reason := rev.Reason
		if reason == "" {
			reason = "no RBAC rule allows it"
		}
		return fmt.Errorf("not allowed to create %s %s (%s); 'weft install' needs a cluster administrator's rights", groupResource(r), where, reason)
	}
	return nil
}

// plural is the English plural of a kind's name, as Linkerd's check
// descriptions write it ("can create GatewayClasses").
func plural(kind string) string {
	if strings.HasSuffix(kind, "s") {
		return kind + "es"
	}
	return kind + "s"
}

func groupResource(r installResource) string {
	if r.group == "" {
		return r.resource
	}
	return r.resource + "." + r.group
}

// checkPodSecurity warns about namespaces whose Pod Security level refuses
// proxy-init's capabilities: pods injected there would not be admitted.
func checkPodSecurity(ctx context.Context, s *checkState) error {
	list, err := s.cluster.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return warnf("cannot list namespaces to read their Pod Security levels: %v", err)
	}
	var strict []string
	for _, ns := range list.Items {
		if ns.Name == "kube-system" || ns.Name == s.cluster.namespace {
			continue // never injected
		}
		if lvl := ns.Labels[podSecurityEnforce]; lvl == "baseline" || lvl == "restricted" {
			strict = append(strict, ns.Name+" ("+lvl+")")
		}
	}
	if len(strict) > 0 {
		return warnf("injected pods need NET_ADMIN and NET_RAW for weft-init, which Pod Security %s refuses in: %s", podSecurityEnforce, strings.Join(strict, ", "))
	}
	return nil
}

// expectedObjects are the objects 'weft install' creates in the control
// plane namespace (their contents do not matter here, only kinds and names).
func expectedObjects(ns string) (deps []*appsv1.Deployment, svcs []*corev1.Service) {
	for _, o := range install.Objects(install.Options{Namespace: ns}) {
		switch v := o.(type) {
		case *appsv1.Deployment:
			deps = append(deps, v)
		case *corev1.Service:
			svcs = append(svcs, v)
		}
	}
	return deps, svcs
}

// expectedCRDs are the names of the CRDs 'weft install --crds' prints, as
// 'weft uninstall --crds' lists them.
func expectedCRDs() ([]string, error) {
	var b bytes.Buffer
	if err := install.WriteUninstall(&b, install.Options{}, true); err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := yaml.Unmarshal(b.Bytes(), &list); err != nil {
		return nil, fmt.Errorf("reading install's CRD list: %w", err)
	}
	var names []string
	for _, it := range list.Items {
		if it.Kind == "CustomResourceDefinition" {
			names = append(names, it.Metadata.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func installedChecks() []checker {
	list := []checker{
		{"weft-config", "control plane Namespace exists", "weft-ns", false, needAPI(func(ctx context.Context, s *checkState) error {
			ns := s.cluster.namespace
			_, err := s.cluster.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s does not exist: install the control plane with 'weft install | kubectl apply -f -'", ns)
			}
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			s.cluster.installed = true
			return nil
		})},
		{"weft-config", "control plane CustomResourceDefinitions exist", "weft-crds", false, needAPI(checkCRDs)},

		{"weft-existence", "control plane Deployments exist", "weft-deployments", true, needInstalled(func(ctx context.Context, s *checkState) error {
			deps, _ := expectedObjects(s.cluster.namespace)
			var missing []string
			for _, d := range deps {
				if _, err := s.cluster.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{}); err != nil {
					missing = append(missing, describeGetError(d.Name, err))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing Deployments in namespace %s: %s; apply 'weft install' output", s.cluster.namespace, strings.Join(missing, ", "))
			}
			return nil
		})},
		{"weft-existence", "control plane Deployments are available", "weft-deployments-available", false, needInstalled(checkDeploymentsAvailable)},
		{"weft-existence", "control plane Services exist", "weft-services", false, needInstalled(func(ctx context.Context, s *checkState) error {
			_, svcs := expectedObjects(s.cluster.namespace)
			var missing []string
			for _, svc := range svcs {
				if _, err := s.cluster.client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{}); err != nil {
					missing = append(missing, describeGetError(svc.Name, err))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing Services in namespace %s: %s; apply 'weft install' output", s.cluster.namespace, strings.Join(missing, ", "))
			}
			return nil
		})},

		{"weft-identity", "certificate config is valid", "weft-identity-config", true, needInstalled(loadClusterIdentity)},
	}
	for _, c := range identityChecks() {
		// Locally the fatal config check stops its category; here it
		// may also be skipped (no namespace), so each needs the issuer.
		run := c.run
		c.run = func(ctx context.Context, s *checkState) error {
			if s.issuer == nil {
				return errSkip
			}
			return run(ctx, s)
		}
		list = append(list, c)
	}
	list = append(list,
		checker{"weft-webhook", "proxy injector webhook is registered", "weft-webhook-registered", true, needInstalled(checkWebhookRegistered)},
		checker{"weft-webhook", "proxy injector webhook has valid cert", "weft-webhook-cert", false, needInstalled(func(ctx context.Context, s *checkState) error {
			_, err := webhookCert(ctx, s)
			return err
		})},
		checker{"weft-webhook", "proxy injector cert is valid for at least 60 days", "weft-webhook-cert-not-expiring-soon", false, needInstalled(func(ctx context.Context, s *checkState) error {
			cert, err := webhookCert(ctx, s)
			if err != nil {
				return errSkip // the check above says why
			}
			return notExpiringSoon(cert, s.now, "proxy injector certificate")
		})},

		checker{"weft-control-plane", "control plane is reachable", "weft-control-reachable", true, needInstalled(func(ctx context.Context, s *checkState) error {
			if s.controlAddr == "" {
				return skipf("no --control-addr given: run 'kubectl -n %s port-forward svc/%s %d' and pass --control-addr 127.0.0.1:%d to check it", s.cluster.namespace, install.DestinationService, install.ControlPort, install.ControlPort)
			}
			return checkControlHealth(ctx, s)
		})},
		checker{"weft-control-plane", "Destination service answers", "weft-destination", false, needInstalled(func(ctx context.Context, s *checkState) error {
			if s.controlAddr == "" {
				return skipf("no --control-addr given")
			}
			return checkDestination(ctx, s)
		})},
	)
	return list
}

func describeGetError(name string, err error) string {
	if apierrors.IsNotFound(err) {
		return name
	}
	return fmt.Sprintf("%s (%v)", name, err)
}

// checkCRDs compares the cluster's CRDs with those 'weft install --crds'
// prints: each must exist and be Established (its API served).
func checkCRDs(ctx context.Context, s *checkState) error {
	want, err := expectedCRDs()
	if err != nil {
		return err
	}
	list, err := s.cluster.dyn.Resource(crdGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing CustomResourceDefinitions: %w", err)
	}
	established := map[string]bool{}
	for _, crd := range list.Items {
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		ok := false
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				ok = true
			}
		}
		established[crd.GetName()] = ok
	}
	var missing, notReady []string
	for _, name := range want {
		ok, found := established[name]
		switch {
		case !found:
			missing = append(missing, name)
		case !ok:
			notReady = append(notReady, name)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%d of %d CRDs are missing: %s; install them with 'weft install --crds | kubectl apply -f -'", len(missing), len(want), abbreviate(missing, 5))
	case len(notReady) > 0:
		return fmt.Errorf("CRDs not yet established (their API is not served): %s; wait, or see 'kubectl describe crd %s'", abbreviate(notReady, 5), notReady[0])
	}
	return nil
}

// abbreviate lists the first n names and how many more there are.
func abbreviate(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// checkDeploymentsAvailable reads each Deployment's status as the
// Deployment controller writes it, as 'kubectl rollout status' does.
func checkDeploymentsAvailable(ctx context.Context, s *checkState) error {
	deps, _ := expectedObjects(s.cluster.namespace)
	var problems []string
	for _, want := range deps {
		d, err := s.cluster.client.AppsV1().Deployments(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			continue // the check above says it is missing
		}
		if p := deploymentProblem(d); p != "" {
			problems = append(problems, d.Name+": "+p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s; see 'kubectl -n %s get deploy,pods' and 'kubectl -n %s describe pods'", strings.Join(problems, "; "), s.cluster.namespace, s.cluster.namespace)
	}
	return nil
}

func deploymentProblem(d *appsv1.Deployment) string {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return "the Deployment controller has not seen the latest spec yet"
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.AvailableReplicas < want:
		return fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return ""
}

// loadClusterIdentity reads the issuer Secret and trust roots ConfigMap
// 'weft install' creates, for the identity checks local mode runs on files.
func loadClusterIdentity(ctx context.Context, s *checkState) error {
	c := s.cluster
	sec, err := c.client.CoreV1().Secrets(c.namespace).Get(ctx, install.IssuerSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("issuer Secret %s/%s: %w", c.namespace, install.IssuerSecret, err)
	}
	anchorsPEM, certPEM, keyPEM := sec.Data["ca.crt"], sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if len(anchorsPEM) == 0 || len(certPEM) == 0 || len(keyPEM) == 0 {
		return fmt.Errorf("issuer Secret %s/%s must hold ca.crt, tls.crt and tls.key", c.namespace, install.IssuerSecret)
	}
	anchors, err := tlsid.ParseCertificates(anchorsPEM)
	if err != nil {
		return fmt.Errorf("issuer Secret %s/%s: ca.crt: %w", c.namespace, install.IssuerSecret, err)
	}
	chain, err := tlsid.ParseCertificates(certPEM)
	if err != nil {
		return fmt.Errorf("issuer Secret %s/%s: tls.crt: %w", c.namespace, install.IssuerSecret, err)
	}
	// X509KeyPair checks that the key is the certificate's.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("issuer Secret %s/%s: tls.key does not belong to tls.crt: %w", c.namespace, install.IssuerSecret, err)
	}
	issuer := chain[0]
	if !issuer.IsCA || issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("issuer certificate %s is not a CA", tlsid.Describe(issuer))
	}
	roots, err := clusterTrustRoots(ctx, c)
	if err != nil {
		return err
	}
	if !sameCertificates(roots, anchors) {
		return fmt.Errorf("the trust roots in ConfigMap %s/%s (what proxies are given) differ from ca.crt in Secret %s (what the issuer is checked against); make them the same", c.namespace, install.TrustRootsMap, install.IssuerSecret)
	}
	s.anchors, s.issuer, s.inter = anchors, issuer, chain[1:]
	return nil
}

// clusterTrustRoots reads (once) the trust roots ConfigMap.
func clusterTrustRoots(ctx context.Context, c *clusterState) ([]*x509.Certificate, error) {
	if c.trustRoots != nil {
		return c.trustRoots, nil
	}
	cm, err := c.client.CoreV1().ConfigMaps(c.namespace).Get(ctx, install.TrustRootsMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("trust roots ConfigMap %s/%s: %w", c.namespace, install.TrustRootsMap, err)
	}
	roots, err := tlsid.ParseCertificates([]byte(cm.Data[install.TrustRootsKey]))
	if err != nil {
		return nil, fmt.Errorf("trust roots ConfigMap %s/%s, key %s: %w", c.namespace, install.TrustRootsMap, install.TrustRootsKey, err)
	}
	c.trustRoots = roots
	return roots, nil
}

// sameCertificates reports whether a and b hold the same certificates, in
// any order.
func sameCertificates(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.Equal(y) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkWebhookRegistered: the MutatingWebhookConfiguration exists and sends
// pods to the injector Service, which exists.
func checkWebhookRegistered(ctx context.Context, s *checkState) error {
	c := s.cluster
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("MutatingWebhookConfiguration %s: %w; apply 'weft install' output", install.InjectorName, err)
	}
	if len(mwc.Webhooks) == 0 {
		return fmt.Errorf("MutatingWebhookConfiguration %s has no webhooks", install.InjectorName)
	}
	for _, w := range mwc.Webhooks {
		ref := w.ClientConfig.Service
		if ref == nil || ref.Namespace != c.namespace || ref.Name != install.InjectorName {
			return fmt.Errorf("webhook %s does not call Service %s/%s (it calls %s); re-apply 'weft install' output", w.Name, c.namespace, install.InjectorName, describeWebhookTarget(w.ClientConfig.Service, w.ClientConfig.URL))
		}
	}
	if _, err := c.client.CoreV1().Services(c.namespace).Get(ctx, install.InjectorName, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the webhook's Service %s/%s: %w", c.namespace, install.InjectorName, err)
	}
	return nil
}

func describeWebhookTarget(ref *admissionregistrationv1.ServiceReference, url *string) string {
	switch {
	case url != nil:
		return "URL " + *url
	case ref != nil:
		return "Service " + ref.Namespace + "/" + ref.Name
	}
	return "nothing"
}

// webhookCert verifies the injector's serving certificate (its Secret)
// against the caBundle the API server trusts it with, for the name the API
// server dials (<service>.<namespace>.svc), and returns it.
func webhookCert(ctx context.Context, s *checkState) (*x509.Certificate, error) {
	c := s.cluster
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.InjectorName, metav1.GetOptions{})
	if err != nil || len(mwc.Webhooks) == 0 {
		return nil, errSkip // the check above says why
	}
	secretName := install.InjectorName + "-tls"
	sec, err := c.client.CoreV1().Secrets(c.namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("serving certificate Secret %s/%s: %w", c.namespace, secretName, err)
	}
	chain, err := tlsid.ParseCertificates(sec.Data[corev1.TLSCertKey])
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: tls.crt: %w", c.namespace, secretName, err)
	}
	if _, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
		return nil, fmt.Errorf("Secret %s/%s: tls.key does not belong to tls.crt: %w", c.namespace, secretName, err)
	}
	host := install.InjectorName + "." + c.namespace + ".svc"
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	for _, w := range mwc.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(w.ClientConfig.CABundle) {
			return nil, fmt.Errorf("webhook %s has no usable caBundle: the API server cannot trust the injector", w.Name)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: host, CurrentTime: s.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return nil, fmt.Errorf("the serving certificate in Secret %s/%s does not verify against webhook %s's caBundle for %s: %w", c.namespace, secretName, w.Name, host, err)
		}
	}
	return chain[0], nil
}

// checkDestination asks Destination for the control plane's own Service,
// which exists wherever the control plane is installed: any first update
// (endpoints or none) means it resolves from the cluster.
func checkDestination(ctx context.Context, s *checkState) error {
	return withControl(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) error {
		path := fmt.Sprintf("%s.%s.svc.cluster.local:%d", install.DestinationService, s.cluster.namespace, install.ControlPort)
		stream, err := pb.NewDestinationClient(conn).Get(ctx, &pb.GetDestination{Scheme: "k8s", Path: path})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			return fmt.Errorf("Destination.Get %s at %s: %w", path, s.controlAddr, err)
		}
		return nil
	})
}

func dataPlaneChecks() []checker {
	return []checker{
		{"weft-data-plane", "data plane namespace exists", "weft-data-plane-ns", true, needAPI(func(ctx context.Context, s *checkState) error {
			ns := s.cluster.proxyNamespace
			if ns == "" {
				return errSkip
			}
			_, err := s.cluster.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s does not exist: check -n; 'kubectl get ns' lists them", ns)
			}
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			return nil
		})},
		{"weft-data-plane", "data plane proxies are ready", "weft-data-plane-ready", true, needAPI(checkProxiesReady)},
		{"weft-data-plane", "data plane proxies trust the cluster's trust anchors", "weft-data-plane-anchors", false, needAPI(checkProxyAnchors)},
		{"weft-data-plane", "data plane proxy versions match the control plane", "weft-data-plane-version", false, needInstalled(checkProxyVersions)},
	}
}

// proxyContainer returns a pod's injected proxy, if it has one.
func proxyContainer(p *corev1.Pod) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == inject.ProxyContainerName {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func checkProxiesReady(ctx context.Context, s *checkState) error {
	c := s.cluster
	list, err := c.client.CoreV1().Pods(c.proxyNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	c.pods = c.pods[:0]
	for _, p := range list.Items {
		if proxyContainer(&p) != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			c.pods = append(c.pods, p)
		}
	}
	where := "any namespace"
	if c.proxyNamespace != "" {
		where = "namespace " + c.proxyNamespace
	}
	if len(c.pods) == 0 {
		return fmt.Errorf("no pods with a %s container in %s: mesh workloads with 'kubectl annotate ns NAMESPACE %s=enabled' and restart them", inject.ProxyContainerName, where, inject.InjectAnnotation)
	}
	var notReady []string
	for _, p := range c.pods {
		if why := proxyNotReady(&p); why != "" {
			notReady = append(notReady, p.Namespace+"/"+p.Name+": "+why)
		}
	}
	if len(notReady) > 0 {
		return fmt.Errorf("%d of %d proxies are not ready:\n    * %s", len(notReady), len(c.pods), strings.Join(notReady, "\n    * "))
	}
	return nil
}

// proxyNotReady says why a pod's proxy container is not ready, from the
// container statuses the kubelet writes, or "" if it is.
func proxyNotReady(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != inject.ProxyContainerName {
			continue
		}
		switch {
		case cs.Ready:
			return ""
		case cs.State.Waiting != nil:
			return "waiting: " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			return fmt.Sprintf("terminated: %s (exit %d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		default:
			return "running, readiness probe not passing"
		}
	}
	return fmt.Sprintf("no status for %s yet (pod %s)", inject.ProxyContainerName, p.Status.Phase)
}

// checkProxyAnchors compares the anchors each proxy was injected with to
// the cluster's trust roots: a proxy with others cannot verify its peers.
func checkProxyAnchors(ctx context.Context, s *checkState) error {
	c := s.cluster
	if len(c.pods) == 0 {
		return errSkip
	}
	roots, err := clusterTrustRoots(ctx, c)
	if err != nil {
		return err
	}
	var bad []string
	for i := range c.pods {
		p := &c.pods[i]
		if why := proxyAnchorsProblem(proxyContainer(p), roots); why != "" {
			bad = append(bad, p.Namespace+"/"+p.Name+": "+why)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d proxies were injected with other trust anchors than ConfigMap %s/%s holds:\n    * %s\n    restart them so the injector gives them the current anchors ('kubectl rollout restart')",
			len(bad), len(c.pods), c.namespace, install.TrustRootsMap, strings.Join(bad, "\n    * "))
	}
	return nil
}

func proxyAnchorsProblem(ctr *corev1.Container, roots []*x509.Certificate) string {
	for _, e := range ctr.Env {
		if e.Name != trustAnchorsEnv {
			continue
		}
		if e.ValueFrom != nil {
			if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil && ref.Name == install.TrustRootsMap && ref.Key == install.TrustRootsKey {
				return "" // read from the ConfigMap itself
			}
			return trustAnchorsEnv + " comes from elsewhere than the trust roots ConfigMap"
		}
		certs, err := tlsid.ParseCertificates([]byte(e.Value))
		if err != nil {
			return trustAnchorsEnv + ": " + err.Error()
		}
		if !sameCertificates(certs, roots) {
			names := make([]string, len(certs))
			for i, c := range certs {
				names[i] = tlsid.Describe(c)
			}
			return "has " + strings.Join(names, ", ")
		}
		return ""
	}
	return "no " + trustAnchorsEnv + " in its environment"
}

// checkProxyVersions compares each proxy's version (its proxy-version
// annotation, else its image tag) with the control plane's image tag.
func checkProxyVersions(ctx context.Context, s *checkState) error {
	c := s.cluster
	if len(c.pods) == 0 {
		return errSkip
	}
	d, err := c.client.AppsV1().Deployments(c.namespace).Get(ctx, install.ControlName, metav1.GetOptions{})
	if err != nil || len(d.Spec.Template.Spec.Containers) == 0 {
		return errSkip // the control plane checks say so
	}
	want := imageTag(d.Spec.Template.Spec.Containers[0].Image)
	if want == "" {
		return warnf("the control plane image %s has no tag to compare proxies' versions with", d.Spec.Template.Spec.Containers[0].Image)
	}
	var old []string
	for i := range c.pods {
		p := &c.pods[i]
		v := p.Annotations[inject.ProxyVersionAnnotation]
		if v == "" {
			v = imageTag(proxyContainer(p).Image)
		}
		if v != want {
			old = append(old, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, orUnknown(v)))
		}
	}
	if len(old) > 0 {
		return warnf("the control plane runs %s; %d of %d proxies run another version: %s; restart their workloads ('kubectl rollout restart') to re-inject them", want, len(old), len(c.pods), strings.Join(old, ", "))
	}
	return nil
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown version"
	}
	return v
}

// imageTag returns an image reference's tag ("" if it has none or is
// pinned by digest only).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return ""
	}
	return image[colon+1:]
}
