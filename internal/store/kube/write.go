package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/weft-mesh/weft/internal/api"
)

// dryRunAll asks the API server to run a request through validation and
// admission without persisting it.
var dryRunAll = []string{metav1.DryRunAll}

// write is one object prepared for server-side apply.
type write struct {
	ref    api.Ref
	src    *source
	body   *unstructured.Unstructured // apiVersion, kind, metadata, spec...: no status
	status *unstructured.Unstructured // apiVersion, kind, name, namespace and status; nil if none
	// hasStatus: the resource has a status subresource (else a status
	// stays in body).
	hasStatus bool
}

// Apply implements store.Store with server-side apply, forcing ownership
// of the fields it sets (field manager Options.FieldManager): an object is
// created, or its fields are replaced, while fields other managers own are
// kept. An object's status, when it has one and its resource has a status
// subresource, is applied there afterwards, as ApplyStatus does.
//
// Kubernetes has no multi-object transactions. Apply comes close to all or
// nothing by first sending every object as a dry run, which runs the API
// server's validation and admission: if any is refused, nothing is
// written. Namespaces are applied first, so that a batch may create a
// namespace and its contents. A failure between the dry run and the write
// (a concurrent change, the API server going away) can still leave the
// objects before it applied; the error says which one failed.
//
// Get and List read the informer caches. Apply (like Delete and
// ApplyStatus) waits, up to SyncTimeout, until the caches of kinds being
// informed hold what it wrote, so a caller reads its own writes; changes by
// other clients reach the caches shortly after they happen.
func (s *Store) Apply(ctx context.Context, objs ...api.Object) error {
	writes := make([]write, 0, len(objs))
	creating := map[string]bool{} // namespaces this batch creates
	for _, o := range objs {
		w, err := s.prepare(o)
		if err != nil {
			return err
		}
		if w.ref.Kind == api.KindNamespace {
			creating[w.ref.Name] = true
		}
		writes = append(writes, w)
	}
	// Namespaces first, otherwise the given order.
	ordered := make([]write, 0, len(writes))
	for _, w := range writes {
		if w.ref.Kind == api.KindNamespace {
			ordered = append(ordered, w)
		}
	}
	for _, w := range writes {
		if w.ref.Kind != api.KindNamespace {
			ordered = append(ordered, w)
		}
	}
	opts := metav1.ApplyOptions{FieldManager: s.opts.FieldManager, Force: true}
	dry := opts
	dry.DryRun = dryRunAll
	for _, w := range ordered {
		if _, err := s.resource(w.src, w.ref).Apply(ctx, w.ref.Name, w.body, dry); err != nil {
			if w.ref.Namespace != "" && creating[w.ref.Namespace] && isNamespaceNotFound(err, w.ref.Namespace) {
				continue // its namespace is created by this very batch
			}
			return fmt.Errorf("store/kube: %s refused, nothing applied: %w", w.ref, err)
		}
	}
	written := make(map[api.Ref]string, len(ordered)) // resourceVersions
	for i, w := range ordered {
		got, err := s.resource(w.src, w.ref).Apply(ctx, w.ref.Name, w.body, opts)
		if err != nil {
			return fmt.Errorf("store/kube: applying %s (%d of %d objects applied before it): %w", w.ref, i, len(ordered), err)
		}
		written[w.ref] = got.GetResourceVersion()
	}
	for _, w := range ordered {
		if w.status == nil {
			continue
		}
		got, err := s.resource(w.src, w.ref).ApplyStatus(ctx, w.ref.Name, w.status, opts)
		if err != nil {
			return fmt.Errorf("store/kube: applying the status of %s: %w", w.ref, err)
		}
		written[w.ref] = got.GetResourceVersion()
	}
	s.awaitCache(ctx, written)
	return nil
}

// ApplyStatus writes the status of objects through their resources' status
// subresource with server-side apply (field manager Options.FieldManager,
// forced), leaving their spec alone. This is how the control plane and
// ingress report route conditions (HTTPRoute and GRPCRoute
// status.parents[].conditions, Gateway status.conditions): only the status
// fields given are owned by Weft, so other controllers' entries are kept.
// Each object needs its kind, namespace and name; the rest of it is
// ignored. Objects are written in order and the first failure stops it.
func (s *Store) ApplyStatus(ctx context.Context, objs ...api.Object) error {
	opts := metav1.ApplyOptions{FieldManager: s.opts.FieldManager, Force: true}
	for _, o := range objs {
		w, err := s.prepare(o)
		if err != nil {
			return err
		}
		if !w.hasStatus {
			return fmt.Errorf("store/kube: %s has no status subresource on this API server", w.ref)
		}
		status := w.status
		if status == nil {
			status = statusBody(w.body, map[string]any{})
		}
		got, err := s.resource(w.src, w.ref).ApplyStatus(ctx, w.ref.Name, status, opts)
		if err != nil {
			return fmt.Errorf("store/kube: applying the status of %s: %w", w.ref, err)
		}
		s.awaitCache(ctx, map[api.Ref]string{w.ref: got.GetResourceVersion()})
	}
	return nil
}

// Delete implements store.Store: a dry run of every deletion first (so a
// refused one deletes nothing), then the deletions. Objects already gone,
// and kinds the API server does not serve, are ignored.
func (s *Store) Delete(ctx context.Context, refs ...api.Ref) error {
	type target struct {
		ref api.Ref
		src *source
	}
	var targets []target
	for _, ref := range refs {
		if ref.Name == "" {
			return fmt.Errorf("store/kube: delete %s: no name", ref.Kind)
		}
		src, err := s.gvrFor(ref.Kind)
		if err != nil {
			if s.kindAbsent(ref.Kind) {
				continue // no CRD, so no such object
			}
			return err
		}
		targets = append(targets, target{ref, src})
	}
	bg := metav1.DeletePropagationBackground
	for _, t := range targets {
		err := s.resource(t.src, t.ref).Delete(ctx, t.ref.Name, metav1.DeleteOptions{DryRun: dryRunAll, PropagationPolicy: &bg})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("store/kube: deleting %s refused, nothing deleted: %w", t.ref, err)
		}
	}
	deleted := make(map[api.Ref]string, len(targets))
	for i, t := range targets {
		err := s.resource(t.src, t.ref).Delete(ctx, t.ref.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("store/kube: deleting %s (%d of %d deleted before it): %w", t.ref, i, len(targets), err)
		}
		deleted[t.ref] = ""
	}
	s.awaitCache(ctx, deleted)
	return nil
}

func (s *Store) kindAbsent(kind api.Kind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.kinds[kind]
	return src != nil && src.resolved && src.absent
}

func (s *Store) resource(src *source, ref api.Ref) dynamic.ResourceInterface {
	s.mu.Lock()
	gvr := src.gvr
	s.mu.Unlock()
	r := s.dyn.Resource(gvr)
	if src.ki.Namespaced {
		return r.Namespace(ref.Namespace)
	}
	return r
}

// prepare turns an object into apply bodies: its JSON with the version the
// API server serves, without the server-owned metadata that server-side
// apply refuses or would misread (resourceVersion would turn the apply into
// a compare-and-swap on a version the caller may not have).
func (s *Store) prepare(o api.Object) (write, error) {
	ref := api.RefOf(o)
	ki := api.Lookup(ref.Kind)
	if ki == nil {
		return write{}, fmt.Errorf("store/kube: unknown kind %q in apiVersion %q (set the object's apiVersion and kind)",
			ref.Kind.Kind, o.GetObjectKind().GroupVersionKind().GroupVersion())
	}
	if ref.Name == "" {
		return write{}, fmt.Errorf("store/kube: %s has no name", ref.Kind)
	}
	if ki.Namespaced && ref.Namespace == "" {
		return write{}, fmt.Errorf("store/kube: %s is namespaced but has no namespace", ref)
	}
	if !ki.Namespaced && ref.Namespace != "" {
		return write{}, fmt.Errorf("store/kube: %s is cluster-scoped but has namespace %q", ref, ref.Namespace)
	}
	src, err := s.gvrFor(ref.Kind)
	if err != nil {
		return write{}, err
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return write{}, fmt.Errorf("store/kube: encoding %s: %w", ref, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return write{}, fmt.Errorf("store/kube: encoding %s: %w", ref, err)
	}
	s.mu.Lock()
	gv := src.gvr.GroupVersion()
	hasStatus := src.hasStatus
	s.mu.Unlock()
	m["apiVersion"] = gv.String()
	m["kind"] = ki.Kind.Kind
	if meta, ok := m["metadata"].(map[string]any); ok {
		for _, k := range []string{"resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"} {
			delete(meta, k)
		}
	}
	w := write{ref: ref, src: src, body: &unstructured.Unstructured{Object: m}, hasStatus: hasStatus}
	if st, ok := m["status"].(map[string]any); ok && hasStatus {
		delete(m, "status")
		if !isEmpty(st) {
			w.status = statusBody(w.body, st)
		}
	}
	return w, nil
}

func statusBody(body *unstructured.Unstructured, status map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": body.GetName()}
	if ns := body.GetNamespace(); ns != "" {
		meta["namespace"] = ns
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": body.GetAPIVersion(),
		"kind":       body.GetKind(),
		"metadata":   meta,
		"status":     status,
	}}
}

// isNamespaceNotFound reports whether err says namespace ns does not exist.
func isNamespaceNotFound(err error, ns string) bool {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || !apierrors.IsNotFound(err) {
		return false
	}
	d := se.ErrStatus.Details
	return d != nil && d.Kind == "namespaces" && d.Name == ns
}

// isEmpty reports whether a status has no values: Go types without
// omitempty encode an unset status as {"parents": null}, which is not a
// status to write.
func isEmpty(m map[string]any) bool {
	for _, v := range m {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			if !isEmpty(v) {
				return false
			}
		case []any:
			if len(v) > 0 {
				return false
			}
		case string:
			if v != "" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// awaitCache waits until the informer caches reflect writes: for each ref,
// the cached object has at least the written resourceVersion, or (for
// "", a deletion) is gone or being deleted. Kinds not being informed are skipped. It gives
// up silently after SyncTimeout: the writes succeeded, and the caches
// catch up on their own.
func (s *Store) awaitCache(ctx context.Context, writes map[api.Ref]string) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for ref, rv := range writes {
		s.mu.Lock()
		var inf cache.SharedIndexInformer
		if src := s.kinds[ref.Kind]; src != nil {
			inf = src.inf
		}
		s.mu.Unlock()
		if inf == nil || !inf.HasSynced() {
			continue
		}
		key := ref.Name
		if ref.Namespace != "" {
			key = ref.Namespace + "/" + ref.Name
		}
		for !cached(inf, key, rv) {
			select {
			case <-ctx.Done():
				s.log.Debug("the cache has not caught up with a write yet", "object", ref.String(), "resourceVersion", rv)
				return
			case <-tick.C:
			}
		}
	}
}

// cached reports whether the informer's object at key is at resourceVersion
// rv or later ("" = deleted). Resource versions are opaque in the API, but
// etcd-backed servers issue increasing integers; when either does not
// parse, only equality counts.
func cached(inf cache.SharedIndexInformer, key, rv string) bool {
	obj, ok, err := inf.GetIndexer().GetByKey(key)
	if err != nil {
		return false
	}
	if !ok {
		return rv == ""
	}
	m, err := metaOf(obj)
	if err != nil {
		return false
	}
	if rv == "" {
		// Deleted, or being deleted: a running pod stays until its
		// kubelet has stopped it, which Delete need not wait for.
		return m.GetDeletionTimestamp() != nil
	}
	have := m.GetResourceVersion()
	if have == rv {
		return true
	}
	h, err1 := strconv.ParseUint(have, 10, 64)
	w, err2 := strconv.ParseUint(rv, 10, 64)
	return err1 == nil && err2 == nil && h >= w
}
