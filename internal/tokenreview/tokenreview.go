// Package tokenreview checks proxies' identity tokens in Kubernetes mode,
// as Linkerd's identity controller does: the proxy presents its pod's
// projected service account token (audience identity.l5d.io) and the
// control plane asks the API server, with a TokenReview, whose it is.
//
// The control plane's service account needs permission to create
// tokenreviews (the system:auth-delegator ClusterRole grants it).
package tokenreview

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/control/identity"
)

// Audience is the audience of the tokens proxies present: the projected
// service account token volume Linkerd's injector adds asks for it, so a
// token made for the API server (or anything else) is refused.
const Audience = "identity.l5d.io"

// podNameExtra is where the API server puts the pod a bound token belongs
// to.
const podNameExtra = "authentication.kubernetes.io/pod-name"

// Validator is an identity.TokenValidator backed by TokenReview.
type Validator struct {
	client   kubernetes.Interface
	audience string
}

var _ identity.TokenValidator = (*Validator)(nil)

// New returns a Validator asking the API server client talks to, for
// tokens of audience ("" means Audience).
func New(client kubernetes.Interface, audience string) *Validator {
	if audience == "" {
		audience = Audience
	}
	return &Validator{client: client, audience: audience}
}

// Validate implements identity.TokenValidator. A token the API server does
// not authenticate, for another audience, or not of a service account is
// refused with identity.ErrInvalidToken; a failed review (API server
// unreachable, no permission) is returned as is, so the proxy retries.
func (v *Validator) Validate(ctx context.Context, token []byte) (identity.Workload, error) {
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{
		Token:     strings.TrimSpace(string(token)),
		Audiences: []string{v.audience},
	}}
	res, err := v.client.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return identity.Workload{}, fmt.Errorf("tokenreview: reviewing a proxy's token: %w", err)
	}
	st := res.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return identity.Workload{}, fmt.Errorf("%w: the API server refused it: %s", identity.ErrInvalidToken, reason)
	}
	if !slices.Contains(st.Audiences, v.audience) {
		return identity.Workload{}, fmt.Errorf("%w: not for audience %q (got %v)", identity.ErrInvalidToken, v.audience, st.Audiences)
	}
	ns, sa, ok := serviceAccount(st.User.Username)
	if !ok {
		return identity.Workload{}, fmt.Errorf("%w: %q is not a service account", identity.ErrInvalidToken, st.User.Username)
	}
	w := identity.Workload{Namespace: ns, ServiceAccount: sa}
	if pods := st.User.Extra[podNameExtra]; len(pods) == 1 {
		w.Pod = pods[0]
	} else {
		// Only tokens bound to a pod (projected volumes are) name it.
		return identity.Workload{}, fmt.Errorf("%w: the token of %s/%s is not bound to a pod (use a projected service account token)", identity.ErrInvalidToken, ns, sa)
	}
	return w, nil
}

// serviceAccount splits "system:serviceaccount:NS:NAME".
func serviceAccount(username string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(username, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}
