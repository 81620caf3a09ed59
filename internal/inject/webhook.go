package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview body; the API server sends a pod
// (with its whole spec), far below this.
const maxReviewBytes = 8 << 20

// NamespaceAnnotations returns a namespace's annotations, for pods that do
// not say themselves whether to inject. The control plane answers it from
// its store.
type NamespaceAnnotations func(ctx context.Context, namespace string) (map[string]string, error)

// Webhook is the mutating admission webhook: for each Pod created whose
// `linkerd.io/inject` annotation (else its namespace's) is "enabled", it
// answers with a JSON patch that does what Manual does. Anything else is
// allowed unchanged: the webhook never refuses a pod.
type Webhook struct {
	Config Config
	// TrustAnchorsFile, when Config has no TrustAnchors, is read for each
	// pod: the control plane's generated anchors appear there only once it
	// has started, and are replaced when rotated.
	TrustAnchorsFile string
	Namespaces       NamespaceAnnotations
	Logger           *slog.Logger
}

func (h *Webhook) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// ServeHTTP handles POSTed admission.k8s.io/v1 AdmissionReviews.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "inject: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		http.Error(w, "inject: reading the AdmissionReview failed or it is too large", http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("inject: not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	resp := h.Review(r.Context(), review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		h.log().Warn("inject: writing the admission response", "err", err)
	}
}

// Review decides one admission request.
func (h *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return allow
	}
	var pod map[string]any
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(fmt.Errorf("inject: decoding the pod: %w", err))
	}
	meta, _ := pod["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	spec, _ := pod["spec"].(map[string]any)
	if spec == nil {
		return allow
	}
	for _, c := range list(spec, "containers") {
		if m, _ := c.(map[string]any); m != nil && m["name"] == ProxyContainerName {
			return allow // injected already (weft inject --manual)
		}
	}
	mode := annotations(meta)[InjectAnnotation]
	if mode == "" && h.Namespaces != nil {
		ann, err := h.Namespaces(ctx, req.Namespace)
		if err != nil {
			// Failing open leaves the pod unmeshed, which 'weft check
			// --proxy' shows; failing closed would block every pod
			// while the store is unavailable.
			h.log().Warn("inject: reading the namespace; not injecting", "namespace", req.Namespace, "err", err)
			return allow
		}
		mode = ann[InjectAnnotation]
	}
	if mode != "enabled" {
		return allow
	}
	cfg := h.Config
	if len(cfg.TrustAnchors) == 0 && h.TrustAnchorsFile != "" {
		b, err := os.ReadFile(h.TrustAnchorsFile)
		if err != nil {
			// The proxy would not start without anchors; leave the
			// pod unmeshed and say why.
			h.log().Warn("inject: reading the trust anchors; not injecting", "err", err)
			return allow
		}
		cfg.TrustAnchors = b
	}
	if err := Manual(meta, spec, cfg, ""); err != nil {
		// A bad skip-ports annotation: refuse, so the user sees why.
		return deny(err)
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "add", "path": "/metadata/annotations", "value": meta["annotations"]},
		{"op": "replace", "path": "/spec", "value": spec},
	})
	if err != nil {
		return deny(fmt.Errorf("inject: %w", err))
	}
	name, _ := meta["name"].(string)
	if name == "" {
		name, _ = meta["generateName"].(string)
	}
	h.log().Info("inject: injected", "namespace", req.Namespace, "pod", name)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func deny(err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Message: err.Error(), Code: http.StatusBadRequest,
	}}
}
