// Package inject adds Weft's proxy to pod specs, as Linkerd's injector
// does: the `linkerd.io/inject: enabled` annotation for the webhook to act
// on (Annotate), or the containers themselves (Manual): a `weft proxy`
// sidecar in transparent mode and a `weft proxy-init` init container that
// redirects the pod's TCP traffic to it with iptables. Uninject undoes both.
//
// Pod specs are edited as generic JSON trees (map[string]any), not typed
// structs, so that fields of the user's manifests this package does not
// know about survive unchanged.
package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names, ports and the UID of the injected parts. The proxy's UID is what
// proxy-init exempts from redirection (its own connections go straight
// out); 2102 as in Linkerd.
const (
	ProxyContainerName = "weft-proxy"
	InitContainerName  = "weft-init"
	TokenVolumeName    = "weft-identity-token"
	TokenMountPath     = "/var/run/secrets/tokens"
	TokenFileName      = "weft-identity-token"
	// TokenAudience is the audience the control plane's TokenReview
	// checks (reference/linkerd.md).
	TokenAudience = "identity.l5d.io"

	ProxyUID     = 2102
	InboundPort  = 4143
	OutboundPort = 4140
	AdminPort    = 4191

	DefaultControlAddr = "weft-dst.weft.svc.cluster.local.:8086"
)

// Annotations read and written.
const (
	InjectAnnotation            = "linkerd.io/inject"
	ProxyVersionAnnotation      = "linkerd.io/proxy-version"
	SkipInboundPortsAnnotation  = "config.linkerd.io/skip-inbound-ports"
	SkipOutboundPortsAnnotation = "config.linkerd.io/skip-outbound-ports"
)

// Config is what manual injection (and the webhook) need to know.
type Config struct {
	// Image is the weft image of the injected proxy. Required.
	Image string
	// InitImage runs proxy-init, which needs iptables (the distroless
	// image has none; the Dockerfile's proxy-init target has it); ""
	// means Image.
	InitImage string
	// Version goes into the proxy-version annotation (meshed pods are
	// recognised by it).
	Version string
	// ControlAddr is the control plane's gRPC address; "" means
	// DefaultControlAddr.
	ControlAddr string
	// TrustAnchors (PEM) are given to the proxy in its environment. Empty
	// leaves them out; the proxy then refuses to start.
	TrustAnchors []byte
}

// Annotate sets the inject annotation on a pod's metadata.
func Annotate(meta map[string]any) {
	setAnnotation(meta, InjectAnnotation, "enabled")
}

// Manual adds the proxy and init containers, the token volume and the
// proxy-version annotation to a pod (its metadata and spec), replacing an
// earlier injection. workload, if known, names the Deployment for the
// proxy's metrics.
func Manual(meta, spec map[string]any, cfg Config, workload string) error {
	if cfg.Image == "" {
		return fmt.Errorf("inject: no image for the injected containers")
	}
	Uninject(meta, spec)
	ann := annotations(meta)
	in, err := ParsePorts(ann[SkipInboundPortsAnnotation])
	if err != nil {
		return fmt.Errorf("inject: annotation %s: %w", SkipInboundPortsAnnotation, err)
	}
	out, err := ParsePorts(ann[SkipOutboundPortsAnnotation])
	if err != nil {
		return fmt.Errorf("inject: annotation %s: %w", SkipOutboundPortsAnnotation, err)
	}
	proxy, err := toTree(ProxyContainer(cfg, workload))
	if err != nil {
		return err
	}
	initImage := cfg.InitImage
	if initImage == "" {
		initImage = cfg.Image
	}
	init, err := toTree(InitContainer(initImage, in, out))
	if err != nil {
		return err
	}
	vol, err := toTree(TokenVolume())
	if err != nil {
		return err
	}
	// The proxy goes first, so that it starts before the app (as
	// Linkerd's proxy-await behaviour approximates).
	spec["containers"] = append([]any{proxy}, list(spec, "containers")...)
	spec["initContainers"] = append(list(spec, "initContainers"), init)
	spec["volumes"] = append(list(spec, "volumes"), vol)
	setAnnotation(meta, ProxyVersionAnnotation, cfg.Version)
	return nil
}

// Uninject removes what Annotate and Manual add and reports whether
// anything was removed.
func Uninject(meta, spec map[string]any) bool {
	changed := false
	if ann, ok := meta["annotations"].(map[string]any); ok {
		for _, k := range []string{InjectAnnotation, ProxyVersionAnnotation} {
			if _, ok := ann[k]; ok {
				delete(ann, k)
				changed = true
			}
		}
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}
	if spec == nil {
		return changed
	}
	for _, f := range []struct{ field, name string }{
		{"containers", ProxyContainerName}, {"initContainers", InitContainerName}, {"volumes", TokenVolumeName},
	} {
		l := list(spec, f.field)
		kept := slices.DeleteFunc(slices.Clone(l), func(e any) bool {
			m, _ := e.(map[string]any)
			return m != nil && m["name"] == f.name
		})
		if len(kept) == len(l) {
			continue
		}
		changed = true
		if len(kept) == 0 {
			delete(spec, f.field)
		} else {
			spec[f.field] = kept
		}
	}
	return changed
}

// ProxyContainer is the sidecar: `weft proxy` in transparent mode, its
// identity from a projected service account token.
func ProxyContainer(cfg Config, workload string) corev1.Container {
	addr := cfg.ControlAddr
	if addr == "" {
		addr = DefaultControlAddr
	}
	args := []string{"proxy", "--transparent",
		"--control-addr=" + addr,
		fmt.Sprintf("--inbound-addr=0.0.0.0:%d", InboundPort),
		fmt.Sprintf("--outbound-addr=127.0.0.1:%d", OutboundPort),
		fmt.Sprintf("--admin-addr=0.0.0.0:%d", AdminPort),
		// Kubernetes expands $(VAR) from the container's env.
		"--namespace=$(POD_NAMESPACE)",
		"--pod=$(POD_NAME)",
		"--service-account=$(SERVICE_ACCOUNT)",
		"--identity-token-file=" + TokenMountPath + "/" + TokenFileName,
	}
	if workload != "" {
		args = append(args, "--deployment="+workload)
	}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	env := []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
	}
	if len(cfg.TrustAnchors) > 0 {
		env = append(env, corev1.EnvVar{Name: "WEFT_PROXY_IDENTITY_TRUST_ANCHORS", Value: string(cfg.TrustAnchors)})
	}
	uid := int64(ProxyUID)
	yes, no := true, false
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(AdminPort)}}}
	}
	return corev1.Container{
		Name:  ProxyContainerName,
		Image: cfg.Image,
		Args:  args,
		Env:   env,
		Ports: []corev1.ContainerPort{
			{Name: "weft-proxy", ContainerPort: InboundPort},
			{Name: "weft-admin", ContainerPort: AdminPort},
		},
		ReadinessProbe: probe("/ready"),
		LivenessProbe:  probe("/live"),
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("20Mi"),
		}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true}},
	}
}

// InitContainer runs `weft proxy-init`, which installs the iptables rules
// (it needs NET_ADMIN and NET_RAW, and root, for that only). The proxy's
// admin port is never redirected inbound, so probes reach it.
func InitContainer(image string, skipIn, skipOut []PortRange) corev1.Container {
	in := append([]PortRange{{AdminPort, AdminPort}}, skipIn...)
	args := []string{"proxy-init",
		fmt.Sprintf("--incoming-proxy-port=%d", InboundPort),
		fmt.Sprintf("--outgoing-proxy-port=%d", OutboundPort),
		fmt.Sprintf("--proxy-uid=%d", ProxyUID),
		"--inbound-ports-to-ignore=" + FormatPorts(in),
	}
	if len(skipOut) > 0 {
		args = append(args, "--outbound-ports-to-ignore="+FormatPorts(skipOut))
	}
	root := int64(0)
	no := false
	return corev1.Container{
		Name:  InitContainerName,
		Image: image,
		Args:  args,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &root, RunAsNonRoot: &no, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// TokenVolume is the projected service account token the proxy presents
// to the Identity service.
func TokenVolume() corev1.Volume {
	exp := int64(24 * 60 * 60)
	return corev1.Volume{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: TokenAudience, ExpirationSeconds: &exp, Path: TokenFileName,
		}}},
	}}}
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi int }

// ParsePorts reads a skip-ports annotation: comma-separated ports and
// ranges ("25,587,4000-4100"); spaces around items are allowed, empty
// means none.
func ParsePorts(s string) ([]PortRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []PortRange
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %w (want ports or ranges like 25,4000-4100)", item, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("%q: %w (want ports or ranges like 25,4000-4100)", item, err)
			}
			if b < a {
				return nil, fmt.Errorf("%q: range ends before it starts", item)
			}
		}
		out = append(out, PortRange{a, b})
	}
	return out, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return n, nil
}

// FormatPorts writes ranges as ParsePorts reads them.
func FormatPorts(rs []PortRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.Lo == r.Hi {
			parts[i] = strconv.Itoa(r.Lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
		}
	}
	return strings.Join(parts, ",")
}

func annotations(meta map[string]any) map[string]string {
	out := map[string]string{}
	if ann, ok := meta["annotations"].(map[string]any); ok {
		for k, v := range ann {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}

func setAnnotation(meta map[string]any, k, v string) {
	ann, ok := meta["annotations"].(map[string]any)
	if !ok {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[k] = v
}

func list(m map[string]any, field string) []any {
	l, _ := m[field].([]any)
	return l
}

// toTree converts a typed value into the generic form the manifests are
// edited in, dropping the zero-valued fields the Go types always print.
func toTree(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	return m, nil
}
