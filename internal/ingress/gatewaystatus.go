package ingress

import (
	"context"
	"encoding/json"
	"fmt"
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

// StatusWriter is a store that writes an object's status alone, leaving
// its spec to its owner: store/kube's ApplyStatus (server-side apply on
// the status subresource, which is all the ingress's RBAC allows). Stores
// without it (the local and memory stores) get the whole object, read
// back just before, through Apply.
type StatusWriter interface {
	ApplyStatus(ctx context.Context, objs ...api.Object) error
}

func writeStatus(ctx context.Context, st store.Store, o api.Object) error {
	if w, ok := st.(StatusWriter); ok {
		return w.ApplyStatus(ctx, o)
	}
	return st.Apply(ctx, o)
}

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
		// c wraps cur: the store is given the object itself.
		if err := writeStatus(ctx, st, cur); err != nil {
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
		var prevConds []metav1.Condition
		if prev != nil {
			prevConds = prev.Conditions
		} else {
			changed = true
		}
		var c bool
		w.Conditions, c = mergeConditions(prevConds, w.Conditions, now)
		changed = changed || c
		if i < len(ours) && !reflect.DeepEqual(ours[i].ParentRef, w.ParentRef) {
			changed = true // order changed
		}
		out = append(out, w)
	}
	return out, changed
}

// mergeConditions returns want with lastTransitionTime set: kept from have
// for a condition whose status did not change, now otherwise. It reports
// whether anything but those times differs.
func mergeConditions(have, want []metav1.Condition, now metav1.Time) ([]metav1.Condition, bool) {
	out := append([]metav1.Condition(nil), want...)
	changed := len(have) != len(want)
	for k := range out {
		c := &out[k]
		c.LastTransitionTime = now
		old := findCondition(have, c.Type)
		switch {
		case old == nil || old.Status != c.Status:
			changed = true
		default:
			c.LastTransitionTime = old.LastTransitionTime
			if old.Reason != c.Reason || old.Message != c.Message || old.ObservedGeneration != c.ObservedGeneration {
				changed = true
			}
		}
	}
	return out, changed
}

// writeGatewayStatuses brings the store's Gateway statuses (conditions and
// listeners; addresses are left alone) in line with want.
func writeGatewayStatuses(ctx context.Context, st store.Store, gws []*gatewayv1.Gateway, want []GatewayStatus) (written int, err error) {
	byRef := make(map[api.Ref]*gatewayv1.GatewayStatus, len(want))
	for i := range want {
		byRef[want[i].Ref] = &want[i].Status
	}
	now := metav1.Now().Rfc3339Copy()
	for _, g := range gws {
		ref := api.Ref{Kind: api.KindGateway, Namespace: g.Namespace, Name: g.Name}
		w := byRef[ref]
		if w == nil {
			continue // another controller's Gateway
		}
		next := gatewayv1.GatewayStatus{Addresses: g.Status.Addresses}
		var changed bool
		next.Conditions, changed = mergeConditions(g.Status.Conditions, w.Conditions, now)
		if len(g.Status.Listeners) != len(w.Listeners) {
			changed = true
		}
		for _, wl := range w.Listeners {
			var prev *gatewayv1.ListenerStatus
			for i := range g.Status.Listeners {
				if g.Status.Listeners[i].Name == wl.Name {
					prev = &g.Status.Listeners[i]
				}
			}
			var prevConds []metav1.Condition
			if prev == nil || prev.AttachedRoutes != wl.AttachedRoutes || !reflect.DeepEqual(prev.SupportedKinds, wl.SupportedKinds) {
				changed = true
			}
			if prev != nil {
				prevConds = prev.Conditions
			}
			var c bool
			wl.Conditions, c = mergeConditions(prevConds, wl.Conditions, now)
			changed = changed || c
			next.Listeners = append(next.Listeners, wl)
		}
		if !changed {
			continue
		}
		cur, err := st.Get(ctx, ref)
		if err != nil {
			continue
		}
		cg, ok := cur.(*gatewayv1.Gateway)
		if !ok || !sameJSON(&cg.Spec, &g.Spec) {
			continue
		}
		cg.Status = next
		if err := writeStatus(ctx, st, cg); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
}

// classAccepted tells whether this ingress accepts a GatewayClass that
// names its controller, with the reason and message of its Accepted
// condition. Weft has no parameters: a class with parametersRef is refused
// rather than served without what it asks for.
func classAccepted(c *gatewayv1.GatewayClass) (bool, gatewayv1.GatewayClassConditionReason, string) {
	if p := c.Spec.ParametersRef; p != nil {
		return false, gatewayv1.GatewayClassReasonInvalidParameters,
			fmt.Sprintf("%s takes no parameters; remove spec.parametersRef (%s %s)", ControllerName, p.Kind, p.Name)
	}
	return true, gatewayv1.GatewayClassReasonAccepted, "accepted by " + ControllerName
}

// writeGatewayClassStatuses writes the Accepted condition of every class
// whose controllerName is ControllerName (and of no other: those are
// another controller's to answer), when it changed.
func writeGatewayClassStatuses(ctx context.Context, st store.Store, gcs []*gatewayv1.GatewayClass) (written int, err error) {
	now := metav1.Now().Rfc3339Copy()
	for _, c := range gcs {
		if string(c.Spec.ControllerName) != ControllerName {
			continue
		}
		ok, reason, msg := classAccepted(c)
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		want := []metav1.Condition{{Type: string(gatewayv1.GatewayClassConditionStatusAccepted), Status: status,
			Reason: string(reason), Message: msg, ObservedGeneration: c.Generation}}
		// Only Accepted is compared: a condition of another type must not
		// make every reload write (and so trigger the next reload).
		var have []metav1.Condition
		if a := findCondition(c.Status.Conditions, want[0].Type); a != nil {
			have = []metav1.Condition{*a}
		}
		conds, changed := mergeConditions(have, want, now)
		if !changed {
			continue
		}
		// As for routes: re-read and write only onto the same spec.
		ref := api.Ref{Kind: api.KindGatewayClass, Name: c.Name}
		cur, err := st.Get(ctx, ref)
		if err != nil {
			continue
		}
		cc, isClass := cur.(*gatewayv1.GatewayClass)
		if !isClass || !sameJSON(&cc.Spec, &c.Spec) {
			continue
		}
		cc.Status.Conditions = conds
		if err := writeStatus(ctx, st, cc); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
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
