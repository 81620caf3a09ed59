package ingress

import (
	"context"
	"encoding/json"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// Route status write-back. The ingress owns the status.parents entries
// whose controllerName is ControllerName; entries of other controllers are
// kept as they are. A route is written only when its entries changed
// (conditions compared without their lastTransitionTime), so the write's
// own store notification finds nothing to do and cannot loop.

// routeObject is an HTTPRoute or a GRPCRoute.
type routeObject interface {
	api.Object
	parents() *[]gatewayv1.RouteParentStatus
	spec() any
}

type httpRouteObj struct{ *gatewayv1.HTTPRoute }

func (r httpRouteObj) parents() *[]gatewayv1.RouteParentStatus { return &r.Status.Parents }
func (r httpRouteObj) spec() any                               { return &r.Spec }

type grpcRouteObj struct{ *gatewayv1.GRPCRoute }

func (r grpcRouteObj) parents() *[]gatewayv1.RouteParentStatus { return &r.Status.Parents }
func (r grpcRouteObj) spec() any                               { return &r.Spec }

func asRouteObject(o api.Object) routeObject {
	switch r := o.(type) {
	case *gatewayv1.HTTPRoute:
		return httpRouteObj{r}
	case *gatewayv1.GRPCRoute:
		return grpcRouteObj{r}
	}
	return nil
}

// writeRouteStatuses brings the store's route statuses in line with want.
// routes are the objects the table was built from.
func writeRouteStatuses(ctx context.Context, st store.Store, routes []routeObject, want []RouteStatus) (written int, err error) {
	byRef := make(map[api.Ref][]gatewayv1.RouteParentStatus, len(want))
	for _, w := range want {
		byRef[w.Ref] = w.Parents
	}
	now := metav1.Now().Rfc3339Copy()
	for _, r := range routes {
		ref := api.RefOf(r)
		merged, changed := mergeParents(*r.parents(), byRef[ref], now)
		if !changed {
			continue
		}
		// Re-read, and write only onto the same spec: a user's apply in
		// the meantime wins, and the next reload recomputes.
		cur, err := st.Get(ctx, ref)
		if err != nil {
			continue
		}
		c := asRouteObject(cur)
		if c == nil || !sameJSON(c.spec(), r.spec()) {
			continue
		}
		*c.parents() = merged
		if err := st.Apply(ctx, c); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
}

// mergeParents replaces our entries in have with want, keeping the
// lastTransitionTime of conditions whose status did not change. It reports
// whether anything but those times differs.
func mergeParents(have, want []gatewayv1.RouteParentStatus, now metav1.Time) ([]gatewayv1.RouteParentStatus, bool) {
	var out, ours []gatewayv1.RouteParentStatus
	for _, p := range have {
		if p.ControllerName == ControllerName {
			ours = append(ours, p)
		} else {
			out = append(out, p)
		}
	}
	changed := len(ours) != len(want)
	for i, w := range want {
		var prev *gatewayv1.RouteParentStatus
		for j := range ours {
			if reflect.DeepEqual(ours[j].ParentRef, w.ParentRef) {
				prev = &ours[j]
				break
			}
		}
		w.Conditions = append([]metav1.Condition(nil), w.Conditions...)
		for k := range w.Conditions {
			c := &w.Conditions[k]
			c.LastTransitionTime = now
			if prev == nil {
				changed = true
				continue
			}
			old := findCondition(prev.Conditions, c.Type)
			switch {
			case old == nil:
				changed = true
			case old.Status == c.Status:
				c.LastTransitionTime = old.LastTransitionTime
				if old.Reason != c.Reason || old.Message != c.Message || old.ObservedGeneration != c.ObservedGeneration {
					changed = true
				}
			default:
				changed = true
			}
		}
		if prev != nil && len(prev.Conditions) != len(w.Conditions) {
			changed = true
		}
		if i < len(ours) && !reflect.DeepEqual(ours[i].ParentRef, w.ParentRef) {
			changed = true // order changed
		}
		out = append(out, w)
	}
	return out, changed
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
