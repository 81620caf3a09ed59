package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

// Emissary-ingress kinds (getambassador.io). The Go types follow the JSON
// shape of Emissary's v3alpha1 CRDs so manifests from its documentation and
// from the Faces demo decode unchanged. v2 is accepted for the kinds whose
// shape did not change in ways we read.
var (
	KindListener         = Kind{"getambassador.io", "Listener"}
	KindHost             = Kind{"getambassador.io", "Host"}
	KindMapping          = Kind{"getambassador.io", "Mapping"}
	KindRateLimitService = Kind{"getambassador.io", "RateLimitService"}
)

func init() {
	register(&KindInfo{Kind: KindListener, Versions: []string{"v3alpha1"}, Plural: "listeners", Namespaced: true,
		New: func() Object { return &Listener{} }, Validate: validateListener})
	register(&KindInfo{Kind: KindHost, Versions: []string{"v3alpha1", "v2"}, Plural: "hosts", Namespaced: true,
		New: func() Object { return &Host{} }, Validate: validateHost})
	register(&KindInfo{Kind: KindMapping, Versions: []string{"v3alpha1", "v2"}, Plural: "mappings", Namespaced: true,
		New: func() Object { return &Mapping{} }, Validate: validateMapping})
	register(&KindInfo{Kind: KindRateLimitService, Versions: []string{"v3alpha1", "v2"}, Plural: "ratelimitservices", Namespaced: true,
		New: func() Object { return &RateLimitService{} }, Validate: validateRateLimitService})
}

// Emissary defaults that the ingress applies when a field is unset.
const (
	DefaultMappingTimeoutMS        = 3000
	DefaultMappingConnectTimeoutMS = 3000
	DefaultMappingIdleTimeoutMS    = 3600000
	DefaultRateLimitTimeoutMS      = 20
	DefaultRateLimitDomain         = "ambassador"
)

// AmbassadorID selects which Emissary installation reads an object. It is a
// list, but a single string is accepted as Emissary accepts it.
type AmbassadorID []string

// UnmarshalJSON accepts a string or a list of strings.
func (a *AmbassadorID) UnmarshalJSON(b []byte) error {
	l, err := unmarshalStringOrList(b, "ambassador_id")
	*a = l
	return err
}

// StringOrList is a list of strings that may be written as one string;
// Emissary accepts both for header lists and CORS fields. A single string is
// kept as written (CORS splits it on commas where that applies).
type StringOrList []string

// UnmarshalJSON accepts a string or a list of strings.
func (s *StringOrList) UnmarshalJSON(b []byte) error {
	l, err := unmarshalStringOrList(b, "value")
	*s = l
	return err
}

func unmarshalStringOrList(b []byte, what string) ([]string, error) {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: want a string or a list of strings", what)
	}
	return l, nil
}

// ---------------------------------------------------------------- Listener

// Listener tells the ingress to listen on a port and which Hosts it serves.
type Listener struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ListenerSpec `json:"spec"`
}

// ListenerSpec is the body of a Listener.
type ListenerSpec struct {
	AmbassadorID AmbassadorID `json:"ambassador_id,omitempty"`
	// Port is required; the ingress binds it (possibly moved by --port-map).
	Port int32 `json:"port"`
	// Protocol is HTTP, HTTPS, HTTPPROXY, HTTPSPROXY, TCP or TLS.
	Protocol string `json:"protocol,omitempty"`
	// ProtocolStack is the low-level alternative to Protocol.
	ProtocolStack []string `json:"protocolStack,omitempty"`
	// SecurityModel is XFP, SECURE or INSECURE; required.
	SecurityModel string `json:"securityModel"`
	StatsPrefix   string `json:"statsPrefix,omitempty"`
	// L7Depth is how many layer-7 proxies sit in front of the ingress.
	L7Depth     int32        `json:"l7Depth,omitempty"`
	HostBinding *HostBinding `json:"hostBinding"`
}

// HostBinding selects the Hosts a Listener serves; when both are set, both
// must match.
type HostBinding struct {
	Namespace *NamespaceBinding     `json:"namespace,omitempty"`
	Selector  *metav1.LabelSelector `json:"selector,omitempty"`
}

// NamespaceBinding is SELF (the Listener's namespace) or ALL.
type NamespaceBinding struct {
	From string `json:"from,omitempty"`
}

var (
	listenerProtocols     = []string{"HTTP", "HTTPS", "HTTPPROXY", "HTTPSPROXY", "TCP", "TLS"}
	listenerStackElements = []string{"HTTP", "PROXY", "TLS", "TCP", "UDP"}
	securityModels        = []string{"XFP", "SECURE", "INSECURE"}
)

func validateListener(o Object) FieldErrors {
	l := o.(*Listener)
	var errs FieldErrors
	s := &l.Spec
	if s.Port < 1 || s.Port > 65535 {
		errs.Add("spec.port", "required: a port between 1 and 65535 (got %d)", s.Port)
	}
	switch {
	case s.Protocol == "" && len(s.ProtocolStack) == 0:
		errs.Add("spec.protocol", "required: set protocol (one of %s) or protocolStack", strings.Join(listenerProtocols, ", "))
	case s.Protocol != "" && len(s.ProtocolStack) > 0:
		errs.Add("spec.protocolStack", "set protocol or protocolStack, not both")
	case s.Protocol != "" && !contains(listenerProtocols, s.Protocol):
		errs.Add("spec.protocol", "unsupported value %q: want one of %s", s.Protocol, strings.Join(listenerProtocols, ", "))
	}
	for i, e := range s.ProtocolStack {
		if !contains(listenerStackElements, e) {
			errs.Add(fmt.Sprintf("spec.protocolStack[%d]", i), "unsupported value %q: want one of %s", e, strings.Join(listenerStackElements, ", "))
		}
	}
	if s.SecurityModel == "" {
		errs.Add("spec.securityModel", "required: one of %s", strings.Join(securityModels, ", "))
	} else if !contains(securityModels, s.SecurityModel) {
		errs.Add("spec.securityModel", "unsupported value %q: want one of %s", s.SecurityModel, strings.Join(securityModels, ", "))
	}
	if s.L7Depth < 0 {
		errs.Add("spec.l7Depth", "must not be negative")
	}
	if s.HostBinding == nil || (s.HostBinding.Namespace == nil && s.HostBinding.Selector == nil) {
		errs.Add("spec.hostBinding", "required: set namespace.from (SELF or ALL) and/or selector")
	} else {
		if ns := s.HostBinding.Namespace; ns != nil && ns.From != "SELF" && ns.From != "ALL" {
			errs.Add("spec.hostBinding.namespace.from", "unsupported value %q: want SELF or ALL", ns.From)
		}
		if sel := s.HostBinding.Selector; sel != nil {
			if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				errs.Add("spec.hostBinding.selector", "%v", err)
			}
		}
	}
	return errs
}

// ---------------------------------------------------------------- Host

// Host names a domain the ingress serves, its TLS settings and which
// Mappings it carries.
type Host struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HostSpec `json:"spec"`
}

// HostSpec is the body of a Host.
type HostSpec struct {
	AmbassadorID AmbassadorID `json:"ambassador_id,omitempty"`
	// Hostname is a DNS glob with at most a leading or trailing "*".
	Hostname string `json:"hostname,omitempty"`
	// Selector is the v2 name of MappingSelector.
	Selector        *metav1.LabelSelector        `json:"selector,omitempty"`
	MappingSelector *metav1.LabelSelector        `json:"mappingSelector,omitempty"`
	AcmeProvider    *ACMEProvider                `json:"acmeProvider,omitempty"`
	TLSSecret       *corev1.SecretReference      `json:"tlsSecret,omitempty"`
	TLSContext      *corev1.LocalObjectReference `json:"tlsContext,omitempty"`
	TLS             *HostTLS                     `json:"tls,omitempty"`
	RequestPolicy   *RequestPolicy               `json:"requestPolicy,omitempty"`
	PreviewURL      *PreviewURL                  `json:"previewUrl,omitempty"`
}

// ACMEProvider is accepted for compatibility; Weft does not run ACME.
type ACMEProvider struct {
	Authority        string                       `json:"authority,omitempty"`
	Email            string                       `json:"email,omitempty"`
	PrivateKeySecret *corev1.LocalObjectReference `json:"privateKeySecret,omitempty"`
	Registration     string                       `json:"registration,omitempty"`
}

// HostTLS is a TLSContext written inline in a Host.
type HostTLS struct {
	CertChainFile         string   `json:"cert_chain_file,omitempty"`
	PrivateKeyFile        string   `json:"private_key_file,omitempty"`
	CASecret              string   `json:"ca_secret,omitempty"`
	CACertChainFile       string   `json:"cacert_chain_file,omitempty"`
	CRLSecret             string   `json:"crl_secret,omitempty"`
	ALPNProtocols         string   `json:"alpn_protocols,omitempty"`
	CertRequired          *bool    `json:"cert_required,omitempty"`
	MinTLSVersion         string   `json:"min_tls_version,omitempty"`
	MaxTLSVersion         string   `json:"max_tls_version,omitempty"`
	CipherSuites          []string `json:"cipher_suites,omitempty"`
	ECDHCurves            []string `json:"ecdh_curves,omitempty"`
	RedirectCleartextFrom *int32   `json:"redirect_cleartext_from,omitempty"`
	SNI                   string   `json:"sni,omitempty"`
}

// RequestPolicy says what to do with requests that are not secure.
type RequestPolicy struct {
	Insecure *InsecureRequestPolicy `json:"insecure,omitempty"`
}

// InsecureRequestPolicy: Action is Redirect (301 to https), Route or
// Reject (400). Case-sensitive, as in Emissary.
type InsecureRequestPolicy struct {
	Action         string `json:"action,omitempty"`
	AdditionalPort *int32 `json:"additionalPort,omitempty"`
}

// PreviewURL is accepted for compatibility and ignored.
type PreviewURL struct {
	Enabled *bool  `json:"enabled,omitempty"`
	Type    string `json:"type,omitempty"`
}

// HasTLS reports whether the Host asks for TLS termination.
func (h *Host) HasTLS() bool {
	return h.Spec.TLSSecret != nil || h.Spec.TLSContext != nil || h.Spec.TLS != nil
}

// InsecureAction is the effective requestPolicy.insecure.action: as set, else
// Redirect for a Host that terminates TLS, else Route (a cleartext-only Host
// has nowhere to redirect to).
func (h *Host) InsecureAction() string {
	if p := h.Spec.RequestPolicy; p != nil && p.Insecure != nil && p.Insecure.Action != "" {
		return p.Insecure.Action
	}
	if h.HasTLS() {
		return "Redirect"
	}
	return "Route"
}

// MappingSelectorOrNil returns mappingSelector, or the v2 selector.
func (h *Host) MappingSelectorOrNil() *metav1.LabelSelector {
	if h.Spec.MappingSelector != nil {
		return h.Spec.MappingSelector
	}
	return h.Spec.Selector
}

func validateHost(o Object) FieldErrors {
	h := o.(*Host)
	var errs FieldErrors
	if h.Spec.Hostname != "" {
		if err := ValidateHostGlob(h.Spec.Hostname); err != nil {
			errs.Add("spec.hostname", "%v", err)
		}
	}
	if h.Spec.Selector != nil && h.Spec.MappingSelector != nil {
		errs.Add("spec.selector", "set mappingSelector or its deprecated name selector, not both")
	}
	for _, f := range []struct {
		path string
		sel  *metav1.LabelSelector
	}{{"spec.mappingSelector", h.Spec.MappingSelector}, {"spec.selector", h.Spec.Selector}} {
		if f.sel != nil {
			if _, err := metav1.LabelSelectorAsSelector(f.sel); err != nil {
				errs.Add(f.path, "%v", err)
			}
		}
	}
	if s := h.Spec.TLSSecret; s != nil && s.Name == "" {
		errs.Add("spec.tlsSecret.name", "required")
	}
	if c := h.Spec.TLSContext; c != nil && c.Name == "" {
		errs.Add("spec.tlsContext.name", "required")
	}
	if p := h.Spec.RequestPolicy; p != nil && p.Insecure != nil {
		switch p.Insecure.Action {
		case "", "Redirect", "Route", "Reject":
		default:
			errs.Add("spec.requestPolicy.insecure.action", "unsupported value %q: want Redirect, Route or Reject (case-sensitive)", p.Insecure.Action)
		}
		if ap := p.Insecure.AdditionalPort; ap != nil && (*ap < -1 || *ap > 65535) {
			errs.Add("spec.requestPolicy.insecure.additionalPort", "want a port between 1 and 65535, or -1 for none (got %d)", *ap)
		}
	}
	return errs
}

// ValidateHostGlob checks a DNS glob as Emissary allows it: "*", a leading
// "*" or a trailing "*", and no "*" elsewhere.
func ValidateHostGlob(g string) error {
	if g == "" {
		return fmt.Errorf("empty hostname")
	}
	if g == "*" {
		return nil
	}
	switch strings.Count(g, "*") {
	case 0:
	case 1:
		if g[0] != '*' && g[len(g)-1] != '*' {
			return fmt.Errorf("hostname %q: '*' is allowed only as the first or last character", g)
		}
	default:
		return fmt.Errorf("hostname %q: a glob may have one '*', at the start or at the end", g)
	}
	inner := strings.Trim(g, "*")
	if strings.ContainsAny(inner, " /\\?#@") {
		return fmt.Errorf("hostname %q: not a DNS name", g)
	}
	return nil
}

// ---------------------------------------------------------------- Mapping

// Mapping routes requests whose path starts with a prefix to a service.
type Mapping struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MappingSpec `json:"spec"`
}

// MappingSpec is the body of a Mapping. Pointers distinguish "unset" (the
// Emissary default applies) from an explicit zero.
type MappingSpec struct {
	AmbassadorID AmbassadorID `json:"ambassador_id,omitempty"`

	// Prefix is required: a plain string prefix (not split on '/'), or with
	// PrefixRegex a regular expression that must match the whole path.
	Prefix      string `json:"prefix"`
	PrefixRegex bool   `json:"prefix_regex,omitempty"`
	PrefixExact bool   `json:"prefix_exact,omitempty"`
	// CaseSensitive defaults to true.
	CaseSensitive *bool `json:"case_sensitive,omitempty"`

	// Hostname is a glob binding the Mapping to Hosts and matching :authority.
	Hostname string `json:"hostname,omitempty"`
	// Host is the deprecated exact (or, with HostRegex, regex) authority.
	Host      string `json:"host,omitempty"`
	HostRegex bool   `json:"host_regex,omitempty"`

	Method               string            `json:"method,omitempty"`
	MethodRegex          bool              `json:"method_regex,omitempty"`
	Headers              map[string]string `json:"headers,omitempty"`
	RegexHeaders         map[string]string `json:"regex_headers,omitempty"`
	QueryParameters      map[string]string `json:"query_parameters,omitempty"`
	RegexQueryParameters map[string]string `json:"regex_query_parameters,omitempty"`

	// Service is [scheme://]name[.namespace][:port]; required.
	Service string `json:"service"`
	// Rewrite replaces the matched prefix; nil means Emissary's default "/",
	// "" keeps the path unchanged.
	Rewrite         *string       `json:"rewrite,omitempty"`
	RegexRewrite    *RegexRewrite `json:"regex_rewrite,omitempty"`
	HostRewrite     string        `json:"host_rewrite,omitempty"`
	AutoHostRewrite bool          `json:"auto_host_rewrite,omitempty"`

	// TimeoutMS is the end-to-end request timeout: nil means 3000, 0 none.
	TimeoutMS                      *int64 `json:"timeout_ms,omitempty"`
	IdleTimeoutMS                  *int64 `json:"idle_timeout_ms,omitempty"`
	ConnectTimeoutMS               *int64 `json:"connect_timeout_ms,omitempty"`
	ClusterIdleTimeoutMS           *int64 `json:"cluster_idle_timeout_ms,omitempty"`
	ClusterMaxConnectionLifetimeMS *int64 `json:"cluster_max_connection_lifetime_ms,omitempty"`

	AddRequestHeaders     map[string]AddedHeader `json:"add_request_headers,omitempty"`
	AddResponseHeaders    map[string]AddedHeader `json:"add_response_headers,omitempty"`
	RemoveRequestHeaders  StringOrList           `json:"remove_request_headers,omitempty"`
	RemoveResponseHeaders StringOrList           `json:"remove_response_headers,omitempty"`
	AddLinkerdHeaders     *bool                  `json:"add_linkerd_headers,omitempty"`

	AllowUpgrade []string `json:"allow_upgrade,omitempty"`
	// UseWebsocket is the deprecated form of allow_upgrade: [websocket].
	UseWebsocket bool `json:"use_websocket,omitempty"`

	RetryPolicy     *RetryPolicy      `json:"retry_policy,omitempty"`
	Labels          MappingLabels     `json:"labels,omitempty"`
	Weight          *int32            `json:"weight,omitempty"`
	Precedence      int32             `json:"precedence,omitempty"`
	CORS            *CORS             `json:"cors,omitempty"`
	CircuitBreakers []CircuitBreaker  `json:"circuit_breakers,omitempty"`
	LoadBalancer    *LoadBalancer     `json:"load_balancer,omitempty"`
	BypassAuth      bool              `json:"bypass_auth,omitempty"`
	GRPC            bool              `json:"grpc,omitempty"`
	TLS             string            `json:"tls,omitempty"`
	Shadow          bool              `json:"shadow,omitempty"`
	StatsName       string            `json:"stats_name,omitempty"`
	Docs            *MappingDocs      `json:"docs,omitempty"`
	AuthContextExt  map[string]string `json:"auth_context_extensions,omitempty"`

	// HostRedirect turns the Mapping into a redirect to Service's host;
	// PathRedirect / PrefixRedirect / RegexRedirect change the path, and
	// RedirectResponseCode (301 default) the status.
	HostRedirect         bool          `json:"host_redirect,omitempty"`
	PathRedirect         string        `json:"path_redirect,omitempty"`
	PrefixRedirect       string        `json:"prefix_redirect,omitempty"`
	RegexRedirect        *RegexRewrite `json:"regex_redirect,omitempty"`
	RedirectResponseCode *int32        `json:"redirect_response_code,omitempty"`

	// Accepted so Emissary manifests apply unchanged; the ingress warns
	// that it does not act on them.
	BypassErrorResponseOverrides bool                    `json:"bypass_error_response_overrides,omitempty"`
	ErrorResponseOverrides       []ErrorResponseOverride `json:"error_response_overrides,omitempty"`
	KeepAlive                    *KeepAlive              `json:"keepalive,omitempty"`
	DNSType                      string                  `json:"dns_type,omitempty"`
	RespectDNSTTL                *bool                   `json:"respect_dns_ttl,omitempty"`
	EnableIPv4                   *bool                   `json:"enable_ipv4,omitempty"`
	EnableIPv6                   *bool                   `json:"enable_ipv6,omitempty"`
	ClusterTag                   string                  `json:"cluster_tag,omitempty"`
	OutlierDetection             string                  `json:"outlier_detection,omitempty"`
	EnvoyOverride                json.RawMessage         `json:"envoy_override,omitempty"`
}

// ErrorResponseOverride replaces the body of responses with a status.
type ErrorResponseOverride struct {
	OnStatusCode int32                     `json:"on_status_code"`
	Body         ErrorResponseOverrideBody `json:"body"`
}

// ErrorResponseOverrideBody is the replacement body.
type ErrorResponseOverrideBody struct {
	TextFormat       string            `json:"text_format,omitempty"`
	JSONFormat       map[string]string `json:"json_format,omitempty"`
	TextFormatSource *struct {
		Filename string `json:"filename"`
	} `json:"text_format_source,omitempty"`
	ContentType string `json:"content_type,omitempty"`
}

// KeepAlive tunes TCP keepalive toward the service.
type KeepAlive struct {
	Probes   *int32 `json:"probes,omitempty"`
	IdleTime *int32 `json:"idle_time,omitempty"`
	Interval *int32 `json:"interval,omitempty"`
}

// RegexRewrite rewrites the path with a regex; it wins over Rewrite.
type RegexRewrite struct {
	Pattern      string `json:"pattern"`
	Substitution string `json:"substitution"`
}

// AddedHeader is a header value to add. In manifests it is a string, or
// {value, append} where append defaults to true.
type AddedHeader struct {
	Value  string `json:"value"`
	Append *bool  `json:"append,omitempty"`
}

// Appends reports whether the value is appended to existing ones (the
// default) rather than replacing them.
func (h AddedHeader) Appends() bool { return h.Append == nil || *h.Append }

// UnmarshalJSON accepts "value" or {"value": ..., "append": ...}.
func (h *AddedHeader) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*h = AddedHeader{}
		return json.Unmarshal(b, &h.Value)
	}
	type plain AddedHeader
	var p plain
	strict, err := sigsjson.UnmarshalStrict(b, &p)
	if err != nil {
		return fmt.Errorf("header value: want a string or {value, append}: %v", err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("header value: %v (want a string or {value, append})", strict[0])
	}
	*h = AddedHeader(p)
	return nil
}

// MarshalJSON writes the short string form when append is unset.
func (h AddedHeader) MarshalJSON() ([]byte, error) {
	if h.Append == nil {
		return json.Marshal(h.Value)
	}
	type plain AddedHeader
	return json.Marshal(plain(h))
}

// RetryPolicy retries failed requests.
type RetryPolicy struct {
	RetryOn       string `json:"retry_on,omitempty"`
	NumRetries    *int32 `json:"num_retries,omitempty"`
	PerTryTimeout string `json:"per_try_timeout,omitempty"`
}

var retryOnValues = []string{"5xx", "gateway-error", "connect-failure", "retriable-4xx", "refused-stream", "retriable-status-codes", "reset", "retriable-headers", "envoy-ratelimited"}

// CORS is answered by the ingress itself for preflight requests.
type CORS struct {
	Origins        StringOrList `json:"origins,omitempty"`
	Methods        StringOrList `json:"methods,omitempty"`
	Headers        StringOrList `json:"headers,omitempty"`
	Credentials    *bool        `json:"credentials,omitempty"`
	ExposedHeaders StringOrList `json:"exposed_headers,omitempty"`
	MaxAge         string       `json:"max_age,omitempty"`
}

// CircuitBreaker limits concurrency toward the service.
type CircuitBreaker struct {
	Priority           string `json:"priority,omitempty"`
	MaxConnections     *int32 `json:"max_connections,omitempty"`
	MaxPendingRequests *int32 `json:"max_pending_requests,omitempty"`
	MaxRequests        *int32 `json:"max_requests,omitempty"`
	MaxRetries         *int32 `json:"max_retries,omitempty"`
}

// LoadBalancer selects the balancing policy.
type LoadBalancer struct {
	Policy   string              `json:"policy"`
	Cookie   *LoadBalancerCookie `json:"cookie,omitempty"`
	Header   string              `json:"header,omitempty"`
	SourceIP *bool               `json:"source_ip,omitempty"`
}

// LoadBalancerCookie configures cookie-based session affinity.
type LoadBalancerCookie struct {
	Name string `json:"name"`
	Path string `json:"path,omitempty"`
	TTL  string `json:"ttl,omitempty"`
}

// MappingDocs is accepted for compatibility (Emissary's dev portal).
type MappingDocs struct {
	Path        string `json:"path,omitempty"`
	URL         string `json:"url,omitempty"`
	Ignored     *bool  `json:"ignored,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	TimeoutMS   *int64 `json:"timeout_ms,omitempty"`
}

// MappingLabels are rate-limit labels: domain -> groups. Each group is a
// one-key map from an arbitrary group name to its specifiers, and becomes
// one rate-limit descriptor.
type MappingLabels map[string][]MappingLabelGroup

// MappingLabelGroup maps a group name to its specifiers.
type MappingLabelGroup map[string][]MappingLabelSpecifier

// MappingLabelSpecifier is a union: exactly one field is set.
type MappingLabelSpecifier struct {
	SourceCluster      *LabelKey            `json:"source_cluster,omitempty"`
	DestinationCluster *LabelKey            `json:"destination_cluster,omitempty"`
	RequestHeaders     *LabelRequestHeaders `json:"request_headers,omitempty"`
	RemoteAddress      *LabelKey            `json:"remote_address,omitempty"`
	GenericKey         *LabelGenericKey     `json:"generic_key,omitempty"`

	// Ignored lists null-valued extra keys found beside the real one (seen in
	// manifests in the wild; Emissary drops them). They are kept so that the
	// object round-trips and the ingress can warn about them.
	Ignored []string `json:"-"`
	// unknown holds non-null keys we do not know; validation refuses them.
	unknown []string
	// bad holds decoding problems of known keys, reported by validation with
	// their field path.
	bad []string
}

// LabelKey is {key: <name>}; the key defaults to the specifier's name.
type LabelKey struct {
	Key string `json:"key,omitempty"`
}

// LabelRequestHeaders takes a descriptor value from a request header.
type LabelRequestHeaders struct {
	Key              string `json:"key"`
	HeaderName       string `json:"header_name"`
	OmitIfNotPresent *bool  `json:"omit_if_not_present,omitempty"`
}

// LabelGenericKey is a constant descriptor entry; Key defaults to
// "generic_key".
type LabelGenericKey struct {
	Key   string `json:"key,omitempty"`
	Value string `json:"value"`
}

var labelSpecifierKeys = []string{"source_cluster", "destination_cluster", "request_headers", "remote_address", "generic_key"}

// UnmarshalJSON decodes the union strictly, except that extra keys whose
// value is null are dropped into Ignored. A bare string naming a keyless
// specifier ("remote_address") is accepted too.
func (s *MappingLabelSpecifier) UnmarshalJSON(b []byte) error {
	*s = MappingLabelSpecifier{}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return err
		}
		switch name {
		case "source_cluster":
			s.SourceCluster = &LabelKey{}
		case "destination_cluster":
			s.DestinationCluster = &LabelKey{}
		case "remote_address":
			s.RemoteAddress = &LabelKey{}
		default:
			s.unknown = append(s.unknown, name)
		}
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("rate-limit label specifier: want an object with one of %s", strings.Join(labelSpecifierKeys, ", "))
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			if !contains(labelSpecifierKeys, k) {
				s.Ignored = append(s.Ignored, k)
			}
			continue
		}
		var target any
		switch k {
		case "source_cluster":
			s.SourceCluster = &LabelKey{}
			target = s.SourceCluster
		case "destination_cluster":
			s.DestinationCluster = &LabelKey{}
			target = s.DestinationCluster
		case "remote_address":
			s.RemoteAddress = &LabelKey{}
			target = s.RemoteAddress
		case "request_headers":
			s.RequestHeaders = &LabelRequestHeaders{}
			target = s.RequestHeaders
		case "generic_key":
			s.GenericKey = &LabelGenericKey{}
			target = s.GenericKey
		default:
			s.unknown = append(s.unknown, k)
			continue
		}
		strict, err := sigsjson.UnmarshalStrict(v, target)
		if err != nil {
			s.bad = append(s.bad, fmt.Sprintf("%s: %s", k, cleanJSONError(err)))
			continue
		}
		for _, e := range strict {
			s.bad = append(s.bad, fmt.Sprintf("%s.%s", k, e.Error()))
		}
	}
	return nil
}

// MarshalJSON writes the set field, and the ignored extras as nulls so the
// object reads back the same.
func (s MappingLabelSpecifier) MarshalJSON() ([]byte, error) {
	type plain MappingLabelSpecifier
	b, err := json.Marshal(plain(s))
	if err != nil || len(s.Ignored) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, k := range s.Ignored {
		m[k] = json.RawMessage("null")
	}
	return json.Marshal(m)
}

// set returns the names of the union fields that are set.
func (s *MappingLabelSpecifier) set() []string {
	var out []string
	if s.SourceCluster != nil {
		out = append(out, "source_cluster")
	}
	if s.DestinationCluster != nil {
		out = append(out, "destination_cluster")
	}
	if s.RequestHeaders != nil {
		out = append(out, "request_headers")
	}
	if s.RemoteAddress != nil {
		out = append(out, "remote_address")
	}
	if s.GenericKey != nil {
		out = append(out, "generic_key")
	}
	return out
}

// Warnings lists what decoding accepted but the user should fix: null-valued
// extra keys in rate-limit label specifiers, and the deprecated host field.
func (m *Mapping) Warnings() []string {
	var out []string
	m.Spec.Labels.walk(func(path string, s *MappingLabelSpecifier) {
		for _, k := range s.Ignored {
			out = append(out, fmt.Sprintf("%s: ignoring null-valued key %q beside %s (Emissary drops it too); remove it", path, k, strings.Join(s.set(), ", ")))
		}
	})
	if m.Spec.Host != "" && m.Spec.Hostname == "" {
		out = append(out, "spec.host is deprecated; use spec.hostname")
	}
	return out
}

// walk calls fn for every specifier, in a stable order, with its field path.
func (l MappingLabels) walk(fn func(path string, s *MappingLabelSpecifier)) {
	domains := make([]string, 0, len(l))
	for d := range l {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		for gi, g := range l[d] {
			names := make([]string, 0, len(g))
			for n := range g {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				specs := g[n]
				for si := range specs {
					fn(fmt.Sprintf("spec.labels.%s[%d].%s[%d]", d, gi, n, si), &specs[si])
				}
			}
		}
	}
}

// ServiceAddr is a parsed Mapping service: [scheme://]host[:port].
type ServiceAddr struct {
	Scheme string // "http" or "https"; "" when not written
	Host   string // as written: "name", "name.ns", an FQDN or an IP
	Port   int    // 0 when not written
}

// ParseMappingService splits a Mapping's service field. It does not apply
// namespace defaults; that is the ingress's business.
func ParseMappingService(s string) (ServiceAddr, error) {
	var a ServiceAddr
	rest := s
	if i := strings.Index(rest, "://"); i >= 0 {
		a.Scheme = strings.ToLower(rest[:i])
		if a.Scheme != "http" && a.Scheme != "https" {
			return a, fmt.Errorf("service %q: scheme must be http or https", s)
		}
		rest = rest[i+3:]
	}
	if rest == "" {
		return a, fmt.Errorf("service %q: empty host; want name[.namespace][:port]", s)
	}
	if strings.ContainsAny(rest, "/?#@ ") {
		return a, fmt.Errorf("service %q: want [http(s)://]name[.namespace][:port], with no path", s)
	}
	host := rest
	if h, p, err := net.SplitHostPort(rest); err == nil {
		port, perr := strconv.Atoi(p)
		if perr != nil || port < 1 || port > 65535 {
			return a, fmt.Errorf("service %q: port %q is not between 1 and 65535", s, p)
		}
		host, a.Port = h, port
	} else if strings.Count(rest, ":") == 1 || strings.HasPrefix(rest, "[") {
		return a, fmt.Errorf("service %q: %v", s, err)
	}
	if host == "" {
		return a, fmt.Errorf("service %q: empty host; want name[.namespace][:port]", s)
	}
	if net.ParseIP(host) == nil {
		for _, label := range strings.Split(host, ".") {
			if !dnsLabel.MatchString(label) {
				return a, fmt.Errorf("service %q: %q is not a valid DNS label", s, label)
			}
		}
	}
	a.Host = host
	return a, nil
}

var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?$`)

func validateMapping(o Object) FieldErrors {
	m := o.(*Mapping)
	s := &m.Spec
	var errs FieldErrors
	switch {
	case s.Prefix == "":
		errs.Add("spec.prefix", "required (a path prefix such as /face/)")
	case s.PrefixRegex:
		if s.PrefixExact {
			errs.Add("spec.prefix_exact", "cannot be combined with prefix_regex")
		}
		if _, err := regexp.Compile(s.Prefix); err != nil {
			errs.Add("spec.prefix", "invalid regular expression: %v", err)
		}
	case !strings.HasPrefix(s.Prefix, "/"):
		errs.Add("spec.prefix", "%q must start with '/' (or set prefix_regex: true)", s.Prefix)
	}
	if s.Hostname != "" {
		if err := ValidateHostGlob(s.Hostname); err != nil {
			errs.Add("spec.hostname", "%v", err)
		}
	}
	if s.Host != "" && s.HostRegex {
		if _, err := regexp.Compile(s.Host); err != nil {
			errs.Add("spec.host", "invalid regular expression: %v", err)
		}
	}
	if s.Service == "" {
		errs.Add("spec.service", "required: [http(s)://]name[.namespace][:port]")
	} else if _, err := ParseMappingService(s.Service); err != nil {
		errs.Add("spec.service", "%v", err)
	}
	if s.MethodRegex && s.Method != "" {
		if _, err := regexp.Compile(s.Method); err != nil {
			errs.Add("spec.method", "invalid regular expression: %v", err)
		}
	}
	for _, pair := range []struct {
		path string
		m    map[string]string
	}{{"spec.regex_headers", s.RegexHeaders}, {"spec.regex_query_parameters", s.RegexQueryParameters}} {
		for _, k := range emissaryKeys(pair.m) {
			if _, err := regexp.Compile(pair.m[k]); err != nil {
				errs.Add(pair.path+"."+k, "invalid regular expression: %v", err)
			}
		}
	}
	if r := s.RegexRewrite; r != nil {
		if r.Pattern == "" {
			errs.Add("spec.regex_rewrite.pattern", "required")
		} else if _, err := regexp.Compile(r.Pattern); err != nil {
			errs.Add("spec.regex_rewrite.pattern", "invalid regular expression: %v", err)
		}
	}
	for _, f := range []struct {
		path string
		v    *int64
	}{
		{"spec.timeout_ms", s.TimeoutMS}, {"spec.idle_timeout_ms", s.IdleTimeoutMS}, {"spec.connect_timeout_ms", s.ConnectTimeoutMS},
		{"spec.cluster_idle_timeout_ms", s.ClusterIdleTimeoutMS}, {"spec.cluster_max_connection_lifetime_ms", s.ClusterMaxConnectionLifetimeMS},
	} {
		if f.v != nil && *f.v < 0 {
			errs.Add(f.path, "must not be negative (0 disables it)")
		}
	}
	if v := s.ConnectTimeoutMS; v != nil && *v == 0 {
		errs.Add("spec.connect_timeout_ms", "cannot be disabled; leave it unset for the default of %d", DefaultMappingConnectTimeoutMS)
	}
	if w := s.Weight; w != nil && (*w < 0 || *w > 100) {
		errs.Add("spec.weight", "must be between 0 and 100 (a percentage), got %d", *w)
	}
	for _, pair := range []struct {
		path string
		m    map[string]AddedHeader
	}{{"spec.add_request_headers", s.AddRequestHeaders}, {"spec.add_response_headers", s.AddResponseHeaders}} {
		for _, k := range emissaryKeys(pair.m) {
			if !validHeaderName(k) {
				errs.Add(pair.path+"."+k, "not a valid header name")
			}
		}
	}
	for i, u := range s.AllowUpgrade {
		if u == "" || !validHeaderName(u) && !strings.Contains(u, "/") {
			errs.Add(fmt.Sprintf("spec.allow_upgrade[%d]", i), "not a valid upgrade protocol name (e.g. websocket)")
		}
	}
	if rp := s.RetryPolicy; rp != nil {
		if rp.RetryOn != "" {
			for _, v := range strings.Split(rp.RetryOn, ",") {
				if !contains(retryOnValues, strings.TrimSpace(v)) {
					errs.Add("spec.retry_policy.retry_on", "unsupported value %q: want one of %s", v, strings.Join(retryOnValues, ", "))
				}
			}
		}
		if n := rp.NumRetries; n != nil && *n < 0 {
			errs.Add("spec.retry_policy.num_retries", "must not be negative")
		}
		if rp.PerTryTimeout != "" {
			if _, err := ParseDuration(rp.PerTryTimeout); err != nil {
				errs.Add("spec.retry_policy.per_try_timeout", "%v", err)
			}
		}
	}
	if lb := s.LoadBalancer; lb != nil {
		switch lb.Policy {
		case "round_robin", "least_request", "ring_hash", "maglev":
		default:
			errs.Add("spec.load_balancer.policy", "unsupported value %q: want round_robin, least_request, ring_hash or maglev", lb.Policy)
		}
	}
	for i, cb := range s.CircuitBreakers {
		if cb.Priority != "" && cb.Priority != "default" && cb.Priority != "high" {
			errs.Add(fmt.Sprintf("spec.circuit_breakers[%d].priority", i), "unsupported value %q: want default or high", cb.Priority)
		}
	}
	if s.PathRedirect != "" && s.PrefixRedirect != "" || s.RegexRedirect != nil && (s.PathRedirect != "" || s.PrefixRedirect != "") {
		errs.Add("spec.path_redirect", "set only one of path_redirect, prefix_redirect and regex_redirect")
	}
	if r := s.RegexRedirect; r != nil {
		if _, err := regexp.Compile(r.Pattern); err != nil || r.Pattern == "" {
			errs.Add("spec.regex_redirect.pattern", "want a regular expression")
		}
	}
	if c := s.RedirectResponseCode; c != nil {
		switch *c {
		case 301, 302, 303, 307, 308:
		default:
			errs.Add("spec.redirect_response_code", "want 301, 302, 303, 307 or 308, got %d", *c)
		}
	}
	if c := s.CORS; c != nil && c.MaxAge != "" {
		if _, err := strconv.Atoi(c.MaxAge); err != nil {
			if _, err := ParseDuration(c.MaxAge); err != nil {
				errs.Add("spec.cors.max_age", "want seconds (\"86400\") or a duration with a unit")
			}
		}
	}
	for _, d := range emissaryKeys(s.Labels) {
		for gi, g := range s.Labels[d] {
			if len(g) != 1 {
				errs.Add(fmt.Sprintf("spec.labels.%s[%d]", d, gi), "a label group is a map with exactly one group name, got %d", len(g))
			}
		}
	}
	s.Labels.walk(func(path string, sp *MappingLabelSpecifier) {
		for _, b := range sp.bad {
			errs.Add(path, "%s", b)
		}
		for _, k := range sp.unknown {
			errs.Add(path, "unknown specifier %q: want one of %s", k, strings.Join(labelSpecifierKeys, ", "))
		}
		set := sp.set()
		if len(set) == 0 && len(sp.unknown) == 0 && len(sp.bad) == 0 {
			errs.Add(path, "empty specifier: set one of %s", strings.Join(labelSpecifierKeys, ", "))
		}
		if len(set) > 1 {
			errs.Add(path, "set only one of %s", strings.Join(set, ", "))
		}
		if rh := sp.RequestHeaders; rh != nil {
			if rh.HeaderName == "" {
				errs.Add(path+".request_headers.header_name", "required")
			}
			if rh.Key == "" {
				errs.Add(path+".request_headers.key", "required")
			}
		}
		if gk := sp.GenericKey; gk != nil && gk.Value == "" {
			errs.Add(path+".generic_key.value", "required")
		}
	})
	return errs
}

func emissaryKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- RateLimitService

// RateLimitService points the ingress at an Envoy RLS v3 server.
type RateLimitService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RateLimitServiceSpec `json:"spec"`
}

// RateLimitServiceSpec is the body of a RateLimitService.
type RateLimitServiceSpec struct {
	AmbassadorID AmbassadorID `json:"ambassador_id,omitempty"`
	// Service is host:port of the RLS; required.
	Service string `json:"service"`
	// ProtocolVersion must be v3 (unset is read as v3).
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Domain defaults to "ambassador".
	Domain string `json:"domain,omitempty"`
	// TimeoutMS defaults to 20.
	TimeoutMS *int64 `json:"timeout_ms,omitempty"`
	// FailureModeDeny answers 500 when the RLS fails; default false (allow).
	FailureModeDeny bool             `json:"failure_mode_deny,omitempty"`
	TLS             string           `json:"tls,omitempty"`
	StatsName       string           `json:"stats_name,omitempty"`
	CircuitBreakers []CircuitBreaker `json:"circuit_breakers,omitempty"`
}

// DomainOrDefault returns the rate-limit domain.
func (r *RateLimitService) DomainOrDefault() string {
	if r.Spec.Domain == "" {
		return DefaultRateLimitDomain
	}
	return r.Spec.Domain
}

func validateRateLimitService(o Object) FieldErrors {
	r := o.(*RateLimitService)
	var errs FieldErrors
	if r.Spec.Service == "" {
		errs.Add("spec.service", "required: host:port of the rate limit service")
	} else if _, err := ParseMappingService(r.Spec.Service); err != nil {
		errs.Add("spec.service", "%v", err)
	}
	switch r.Spec.ProtocolVersion {
	case "", "v3":
	case "v2":
		errs.Add("spec.protocol_version", "v2 is not supported (Emissary 3.x refuses it too); set protocol_version: v3")
	default:
		errs.Add("spec.protocol_version", "unsupported value %q: want v3", r.Spec.ProtocolVersion)
	}
	if t := r.Spec.TimeoutMS; t != nil && *t < 0 {
		errs.Add("spec.timeout_ms", "must not be negative")
	}
	return errs
}
