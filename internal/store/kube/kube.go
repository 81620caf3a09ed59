// Package kube is the Kubernetes backend of store.Store: it reads resources
// from the API server through client-go informers and writes them with
// server-side apply, so that the control plane runs unchanged in a cluster.
//
// Reads (Get, List) are served from informer caches and never reach the
// API server once a kind's cache has synced. Informers start lazily, on
// the first Get, List or Watch of a kind, and only for the kinds asked for,
// which bounds memory to what the process uses; the caches also drop
// managedFields and kubectl's last-applied-configuration annotation, the
// bulk of most objects.
//
// The Kubernetes kinds (Namespace, Service, Pod, Secret, ServiceAccount,
// Deployment, EndpointSlice) use typed informers. Every other registered
// kind (ServiceProfile, Gateway API, policy, Emissary, SMI, multicluster,
// ExternalWorkload) is a custom resource read with a dynamic informer and
// converted to its internal/api Go type through JSON. A kind whose
// CustomResourceDefinition is not installed reads as empty; the store looks
// for it again every resync period and starts informing it once it
// appears, notifying watchers.
//
// Informers reconnect and relist by themselves when the API server restarts
// or a watch breaks, so a Store outlives its API server's restarts.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// Defaults for Options.
const (
	DefaultFieldManager = "weft"
	DefaultSyncTimeout  = 30 * time.Second
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// Resync is how often Watch channels fire when nothing changed, and
	// how often kinds whose CRD is missing are looked for again; zero
	// means store.DefaultResync.
	Resync time.Duration
	// SyncTimeout bounds how long Get and List wait for a kind's first
	// list from the API server before returning an error; zero means
	// DefaultSyncTimeout.
	SyncTimeout time.Duration
	// FieldManager names this writer in server-side apply; "" means
	// DefaultFieldManager.
	FieldManager string
	// Namespace, if set, limits the namespaced kinds' informers to one
	// namespace, for an identity that RBAC lets list and watch only
	// there (a Role rather than a ClusterRole). Reads of other
	// namespaces then find nothing. Cluster-scoped kinds are unaffected.
	Namespace string
}

// Store is a store.Store over a Kubernetes API server. Create it with New
// and stop its informers with Close.
type Store struct {
	opts    Options
	log     *slog.Logger
	client  kubernetes.Interface
	dyn     dynamic.Interface
	disc    discovery.DiscoveryInterface
	factory informers.SharedInformerFactory

	ctx    context.Context // informers' lifetime; ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background goroutines (dynamic informers, rediscovery)

	mu       sync.Mutex
	kinds    map[api.Kind]*source
	watchers map[*watcher]struct{}
}

var _ store.Store = (*Store)(nil)

// source is one kind's informer and how to reach its resource.
type source struct {
	ki    *api.KindInfo
	typed bool // a built-in kind with a typed informer
	// resolved is set once discovery has answered: gvr is then the
	// served resource (or absent is true).
	resolved  bool
	absent    bool
	gvr       schema.GroupVersionResource
	hasStatus bool // the resource has a status subresource
	inf       cache.SharedIndexInformer
	wanted    bool // someone reads this kind: inform it once it appears
}

type watcher struct {
	kinds map[api.Kind]bool
	ch    chan struct{}
}

// New returns a Store talking to the API server cfg points at. It makes no
// request until a kind is first used.
func New(cfg *rest.Config, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resync <= 0 {
		opts.Resync = store.DefaultResync
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "weft"
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("store/kube: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("store/kube: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		opts:   opts,
		log:    opts.Logger.With("component", "store/kube"),
		client: client,
		dyn:    dyn,
		disc:   client.Discovery(),
		// Resync 0: the informers' own periodic resync would only replay
		// the cache; Watch has its own resync timer.
		factory:  informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimTyped), informers.WithNamespace(opts.Namespace)),
		ctx:      ctx,
		cancel:   cancel,
		kinds:    map[api.Kind]*source{},
		watchers: map[*watcher]struct{}{},
	}
	s.wg.Add(1)
	go s.rediscover()
	return s, nil
}

// Close stops every informer and background goroutine. Watch channels
// close when their own contexts end.
func (s *Store) Close() error {
	s.cancel()
	s.factory.Shutdown()
	s.wg.Wait()
	return nil
}

// Get implements store.Store, from the kind's informer cache.
func (s *Store) Get(ctx context.Context, ref api.Ref) (api.Object, error) {
	src, inf, err := s.ready(ctx, ref.Kind)
	if err != nil {
		return nil, err
	}
	if inf == nil {
		return nil, fmt.Errorf("%s: %w", ref, store.ErrNotFound)
	}
	key := ref.Name
	if ref.Namespace != "" {
		key = ref.Namespace + "/" + ref.Name
	}
	obj, ok, err := inf.GetIndexer().GetByKey(key)
	if err != nil {
		return nil, fmt.Errorf("store/kube: reading %s from the cache: %w", ref, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", ref, store.ErrNotFound)
	}
	return s.toAPI(src, obj)
}

// List implements store.Store, from the kind's informer cache.
func (s *Store) List(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	return s.list(ctx, kind, namespace, true)
}

// ListShared implements store.SharedLister: typed kinds come straight
// from the informers' caches (which client-go never modifies in place),
// with TypeMeta as the API server left it (empty in lists).
func (s *Store) ListShared(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	return s.list(ctx, kind, namespace, false)
}

func (s *Store) list(ctx context.Context, kind api.Kind, namespace string, copied bool) ([]api.Object, error) {
	src, inf, err := s.ready(ctx, kind)
	if err != nil {
		return nil, err
	}
	if inf == nil {
		return nil, nil
	}
	var items []any
	if namespace == "" {
		items = inf.GetIndexer().List()
	} else if items, err = inf.GetIndexer().ByIndex(cache.NamespaceIndex, namespace); err != nil {
		return nil, fmt.Errorf("store/kube: listing %s in %s from the cache: %w", kind, namespace, err)
	}
	out := make([]api.Object, 0, len(items))
	for _, it := range items {
		if !copied {
			if o, ok := it.(api.Object); ok {
				if _, custom := it.(*customEntry); !custom {
					out = append(out, o)
					continue
				}
			}
		}
		o, err := s.toAPI(src, it)
		if err != nil {
			// One object the API server accepted but our type cannot
			// hold must not hide all the others.
			s.log.Warn("skipping an object", "kind", kind.String(), "err", err)
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}

// Watch implements store.Store. The channel fires once at once, after
// informer events of the kinds (coalesced), and every Resync.
func (s *Store) Watch(ctx context.Context, kinds ...api.Kind) (<-chan struct{}, error) {
	for _, k := range kinds {
		if _, _, err := s.start(k); err != nil {
			return nil, err
		}
	}
	w := &watcher{kinds: map[api.Kind]bool{}, ch: make(chan struct{}, 1)}
	for _, k := range kinds {
		w.kinds[k] = true
	}
	w.ch <- struct{}{}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		t := time.NewTicker(s.opts.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.ch:
			case <-t.C:
			}
			select {
			case out <- struct{}{}:
			default: // one is already pending; coalesce
			}
		}
	}()
	return out, nil
}

func (s *Store) notify(kind api.Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if w.kinds[kind] {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}

// ready starts kind's informer if needed and waits (up to SyncTimeout)
// until its cache holds a complete list. A kind whose CRD is absent is
// returned with a nil informer.
func (s *Store) ready(ctx context.Context, kind api.Kind) (*source, cache.SharedIndexInformer, error) {
	src, inf, err := s.start(kind)
	if err != nil {
		return nil, nil, err
	}
	if inf == nil || inf.HasSynced() {
		return src, inf, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !inf.HasSynced() {
		select {
		case <-ctx.Done():
			if s.ctx.Err() != nil {
				return nil, nil, errors.New("store/kube: the store is closed")
			}
			return nil, nil, fmt.Errorf("store/kube: %s not listed from the API server within %s (is it reachable, and may this identity list %s?): %w",
				kind, s.opts.SyncTimeout, src.ki.Plural, ctx.Err())
		case <-tick.C:
		}
	}
	return src, inf, nil
}

// start returns kind's source and informer, resolving its resource and
// starting the informer the first time. The informer is nil while the
// kind's CRD is absent.
func (s *Store) start(kind api.Kind) (*source, cache.SharedIndexInformer, error) {
	if s.ctx.Err() != nil {
		return nil, nil, errors.New("store/kube: the store is closed")
	}
	s.mu.Lock()
	src := s.kinds[kind]
	if src == nil {
		ki := api.Lookup(kind)
		if ki == nil {
			s.mu.Unlock()
			return nil, nil, fmt.Errorf("store/kube: unknown kind %s", kind)
		}
		src = &source{ki: ki, typed: typedInformers[kind] != nil}
		s.kinds[kind] = src
	}
	src.wanted = true
	if src.inf != nil || (src.resolved && src.absent) {
		inf := src.inf
		s.mu.Unlock()
		return src, inf, nil
	}
	s.mu.Unlock()
	// Discovery is a network call: made outside the lock. Two callers may
	// race here; startInformer keeps the first informer.
	if err := s.resolve(src); err != nil {
		return nil, nil, err
	}
	return src, s.startInformer(src), nil
}

// resolve asks discovery which version of src's resource the API server
// serves (the first of the kind's versions that it does) and whether it
// has a status subresource.
func (s *Store) resolve(src *source) error {
	ki := src.ki
	var firstErr error
	for _, v := range ki.Versions {
		gv := schema.GroupVersion{Group: ki.Group, Version: v}
		list, err := s.disc.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue // this version (or the whole group) is not served
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		found, status := false, false
		for _, r := range list.APIResources {
			switch r.Name {
			case ki.Plural:
				found = true
			case ki.Plural + "/status":
				status = true
			}
		}
		if found {
			s.mu.Lock()
			src.resolved, src.absent = true, false
			src.gvr = gv.WithResource(ki.Plural)
			src.hasStatus = status
			s.mu.Unlock()
			return nil
		}
	}
	if firstErr != nil {
		return fmt.Errorf("store/kube: looking up %s in the API server's discovery: %w", ki.Kind, firstErr)
	}
	s.mu.Lock()
	wasAbsent := src.resolved && src.absent
	src.resolved, src.absent = true, true
	s.mu.Unlock()
	if !wasAbsent {
		s.log.Info("kind not served by the API server; reading it as empty until its CRD is installed",
			"kind", ki.Kind.String(), "versions", ki.Versions)
	}
	return nil
}

// startInformer creates and runs src's informer if it is resolved, present
// and not running yet, and returns it (nil while the kind is absent).
func (s *Store) startInformer(src *source) cache.SharedIndexInformer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.inf != nil || !src.resolved || src.absent || s.ctx.Err() != nil {
		return src.inf
	}
	kind := src.ki.Kind
	if src.typed {
		src.inf = typedInformers[kind](s.factory)
	} else {
		ns := metav1.NamespaceAll
		if src.ki.Namespaced {
			ns = s.opts.Namespace
		}
		gi := dynamicInformer(s.dyn, src.gvr, ns)
		src.inf = gi.Informer()
		if err := src.inf.SetTransform(s.trimCustom(kind)); err != nil {
			s.log.Error("setting an informer's transform", "kind", kind.String(), "err", err)
		}
	}
	_, err := src.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.notify(kind) },
		UpdateFunc: func(oldObj, newObj any) {
			// Skip replays of an unchanged object.
			o, err1 := metaOf(oldObj)
			n, err2 := metaOf(newObj)
			if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			s.notify(kind)
		},
		DeleteFunc: func(any) { s.notify(kind) },
	})
	if err != nil {
		s.log.Error("adding an informer's event handler", "kind", kind.String(), "err", err)
	}
	if src.typed {
		s.factory.Start(s.ctx.Done())
	} else {
		inf := src.inf
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			inf.RunWithContext(s.ctx)
		}()
	}
	s.log.Debug("informing", "kind", kind.String(), "resource", src.gvr.String())
	return src.inf
}

// rediscover looks again, every Resync, for kinds that are wanted but whose
// CRD was absent, and starts informing those that appeared.
func (s *Store) rediscover() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.Resync)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var missing []*source
		for _, src := range s.kinds {
			if src.wanted && src.inf == nil {
				missing = append(missing, src)
			}
		}
		s.mu.Unlock()
		for _, src := range missing {
			if err := s.resolve(src); err != nil {
				s.log.Debug("rediscovery", "kind", src.ki.Kind.String(), "err", err)
				continue
			}
			s.mu.Lock()
			present, gvr := !src.absent, src.gvr
			s.mu.Unlock()
			if present {
				s.log.Info("kind now served by the API server; informing it", "kind", src.ki.Kind.String(), "resource", gvr.String())
				s.startInformer(src)
				s.notify(src.ki.Kind)
			}
		}
	}
}

// gvrFor resolves kind's resource for a write. Unlike reads, a write to a
// kind whose CRD is missing is an error.
func (s *Store) gvrFor(kind api.Kind) (*source, error) {
	s.mu.Lock()
	src := s.kinds[kind]
	known := src != nil && src.resolved && !src.absent
	s.mu.Unlock()
	if !known {
		ki := api.Lookup(kind)
		if ki == nil {
			return nil, fmt.Errorf("store/kube: unknown kind %s", kind)
		}
		if src == nil {
			src = &source{ki: ki, typed: typedInformers[kind] != nil}
			s.mu.Lock()
			if existing := s.kinds[kind]; existing != nil {
				src = existing
			} else {
				s.kinds[kind] = src
			}
			s.mu.Unlock()
		}
		if err := s.resolve(src); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.absent {
		return nil, fmt.Errorf("store/kube: the API server does not serve %s (%s, versions %v): install its CustomResourceDefinition first ('weft install --crds | kubectl apply -f -')",
			src.ki.Kind.Kind, src.ki.Group, src.ki.Versions)
	}
	return src, nil
}

// metaOf returns the object metadata of a cached object or a deletion
// tombstone's.
func metaOf(obj any) (metav1.Object, error) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if o, ok := obj.(metav1.Object); ok {
		return o, nil
	}
	return nil, fmt.Errorf("store/kube: cached %T has no metadata", obj)
}

// toAPI copies a cached object into a fresh api.Object with its TypeMeta
// set, so the caller owns it.
func (s *Store) toAPI(src *source, obj any) (api.Object, error) {
	switch o := obj.(type) {
	case *customEntry:
		return o.decode()
	case runtime.Object:
		c, ok := o.DeepCopyObject().(api.Object)
		if !ok {
			return nil, fmt.Errorf("store/kube: cached %T is not a %s", obj, src.ki.Kind)
		}
		// Typed informers' objects have no TypeMeta (the API server
		// leaves it out of lists); consumers look at it.
		c.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: src.ki.Group, Version: src.ki.Versions[0], Kind: src.ki.Kind.Kind})
		return c, nil
	}
	return nil, fmt.Errorf("store/kube: unexpected cached %T for %s", obj, src.ki.Kind)
}
