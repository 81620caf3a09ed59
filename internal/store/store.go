// Package store defines where Weft's resources live. The local backend
// (store/local) keeps them in a state directory; the Kubernetes backend will
// read them from the API server. Everything above the store is identical in
// both modes.
package store

import (
	"context"
	"errors"

	"github.com/weft-mesh/weft/internal/api"
)

// ErrNotFound is returned by Get for a missing object.
var ErrNotFound = errors.New("store: not found")

// Store holds resources. Implementations are safe for concurrent use.
//
// Objects returned by Get and List belong to the caller: the store hands out
// copies, so callers may modify them.
type Store interface {
	// Get returns one object, or an error wrapping ErrNotFound.
	Get(ctx context.Context, ref api.Ref) (api.Object, error)
	// List returns every object of kind in namespace ("" = all namespaces),
	// sorted by namespace then name.
	List(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error)
	// Apply creates or replaces objects, all or nothing: if any object is
	// refused, none is stored.
	Apply(ctx context.Context, objs ...api.Object) error
	// Delete removes objects, all or nothing; missing ones are ignored.
	Delete(ctx context.Context, refs ...api.Ref) error
	// Watch returns a channel that receives a value soon after any object of
	// the given kinds changes, and at least once per resync period even when
	// nothing changed. It is level-triggered: notifications are coalesced and
	// carry no data, so a receiver re-reads with List. The channel receives
	// once immediately and is closed when ctx ends.
	Watch(ctx context.Context, kinds ...api.Kind) (<-chan struct{}, error)
}

// SharedLister is implemented by stores that can list without copying.
// Readers that re-read everything on each change, such as the Destination
// snapshot, use it through ListShared so that a change costs what changed
// rather than a copy of every object.
type SharedLister interface {
	// ListShared is List, except that the objects are shared with the
	// store and with other callers: they must not be modified, and their
	// TypeMeta may be empty.
	ListShared(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error)
}

// ListShared lists through s's SharedLister when it has one, else with
// List. The caller must not modify the objects.
func ListShared(ctx context.Context, s Store, kind api.Kind, namespace string) ([]api.Object, error) {
	if sl, ok := s.(SharedLister); ok {
		return sl.ListShared(ctx, kind, namespace)
	}
	return s.List(ctx, kind, namespace)
}
