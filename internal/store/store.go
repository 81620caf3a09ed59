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
