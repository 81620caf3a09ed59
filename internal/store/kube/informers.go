package kube

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/weft-mesh/weft/internal/api"
)

// typedInformers maps the built-in kinds to their typed informers. The
// factory creates each at most once; Start runs those not yet running.
var typedInformers = map[api.Kind]func(informers.SharedInformerFactory) cache.SharedIndexInformer{
	api.KindNamespace: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().Namespaces().Informer()
	},
	api.KindService: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().Services().Informer()
	},
	api.KindPod: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().Pods().Informer()
	},
	api.KindSecret: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().Secrets().Informer()
	},
	api.KindServiceAccount: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().ServiceAccounts().Informer()
	},
	api.KindDeployment: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Apps().V1().Deployments().Informer()
	},
	api.KindEndpointSlice: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Discovery().V1().EndpointSlices().Informer()
	},
}

// dynamicInformer informs one custom resource in namespace ("" = all).
func dynamicInformer(dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace string) informers.GenericInformer {
	return dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, namespace, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil)
}

// lastApplied is kubectl's copy of the whole object in an annotation;
// nothing in Weft reads it, and it doubles an object's size.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// trimTyped drops what Weft never reads from a typed object before it is
// cached: managedFields and the last-applied annotation.
func trimTyped(obj any) (any, error) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t, nil
	}
	if m, ok := obj.(metav1.Object); ok {
		trimMeta(m)
	}
	return obj, nil
}

func trimMeta(m metav1.Object) {
	m.SetManagedFields(nil)
	if a := m.GetAnnotations(); a != nil {
		if _, ok := a[lastApplied]; ok {
			delete(a, lastApplied)
			if len(a) == 0 {
				m.SetAnnotations(nil)
			}
		}
	}
}

// customEntry is how a custom resource is cached: its trimmed JSON, which
// is several times smaller than the unstructured map and is decoded into a
// fresh api Go type on every read (so readers own what they get). The
// embedded ObjectMeta holds only what the informer's keys and indexes
// need.
type customEntry struct {
	metav1.ObjectMeta
	kind api.Kind
	raw  []byte
	err  error // why raw does not decode into the kind's Go type, if it does not
}

func (e *customEntry) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject shares raw: entries are never modified once built.
func (e *customEntry) DeepCopyObject() runtime.Object {
	c := *e
	c.ObjectMeta = *e.ObjectMeta.DeepCopy()
	return &c
}

func (e *customEntry) decode() (api.Object, error) {
	if e.err != nil {
		return nil, e.err
	}
	o := api.New(e.kind)
	if err := json.Unmarshal(e.raw, o); err != nil {
		return nil, fmt.Errorf("store/kube: decoding %s %s/%s: %w", e.kind, e.Namespace, e.Name, err)
	}
	return o, nil
}

// trimCustom returns the transform that turns a dynamic informer's
// unstructured objects into customEntries. An object that does not fit the
// Go type (the CRD's schema may be looser than ours) is kept with its error,
// logged when read, and skipped by List.
func (s *Store) trimCustom(kind api.Kind) cache.TransformFunc {
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil // a tombstone, or already an entry
		}
		trimMeta(u)
		e := &customEntry{kind: kind}
		e.Namespace, e.Name = u.GetNamespace(), u.GetName()
		e.ResourceVersion, e.UID = u.GetResourceVersion(), u.GetUID()
		raw, err := json.Marshal(u.Object)
		if err != nil {
			e.err = fmt.Errorf("store/kube: encoding %s %s/%s: %w", kind, e.Namespace, e.Name, err)
			return e, nil
		}
		e.raw = raw
		if err := json.Unmarshal(raw, api.New(kind)); err != nil {
			e.err = fmt.Errorf("store/kube: %s %s/%s does not fit Weft's %s type: %w", kind, e.Namespace, e.Name, kind.Kind, err)
		}
		return e, nil
	}
}
