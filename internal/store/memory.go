package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/api"
)

// DefaultResync is how often watchers are notified when nothing changed, so
// that a missed notification can never leave a consumer stale for long.
const DefaultResync = 30 * time.Second

// Memory is a Store held in process memory. It backs tests and embedders,
// and is the in-memory index the local backend loads its state into.
type Memory struct {
	// Resync is the watch resync period; zero means DefaultResync.
	Resync time.Duration

	mu       sync.Mutex
	objs     map[api.Ref][]byte // JSON, so callers never share memory with the store
	watchers map[*watcher]struct{}
	// shared caches decoded objects for ListShared; whatever changes a
	// ref's JSON deletes its entry.
	shared map[api.Ref]api.Object
}

type watcher struct {
	kinds map[api.Kind]bool
	ch    chan struct{}
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{objs: map[api.Ref][]byte{}, watchers: map[*watcher]struct{}{}}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, ref api.Ref) (api.Object, error) {
	m.mu.Lock()
	raw, ok := m.objs[ref]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return decodeStored(ref.Kind, raw)
}

// List implements Store.
func (m *Memory) List(_ context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	m.mu.Lock()
	refs := m.refsLocked(kind, namespace)
	raws := make([][]byte, len(refs))
	for i, ref := range refs {
		raws[i] = m.objs[ref]
	}
	m.mu.Unlock()
	out := make([]api.Object, 0, len(raws))
	for _, raw := range raws {
		o, err := decodeStored(kind, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// refsLocked returns the stored refs of kind in namespace ("" = all),
// sorted by namespace then name. m.mu must be held.
func (m *Memory) refsLocked(kind api.Kind, namespace string) []api.Ref {
	var refs []api.Ref
	for ref := range m.objs {
		if ref.Kind == kind && (namespace == "" || ref.Namespace == namespace) {
			refs = append(refs, ref)
		}
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Namespace != refs[j].Namespace {
			return refs[i].Namespace < refs[j].Namespace
		}
		return refs[i].Name < refs[j].Name
	})
	return refs
}

// ListShared implements SharedLister: objects decoded once per stored
// version and handed to every caller. Apply, Delete and Replace forget the
// decoded object of every ref they change.
func (m *Memory) ListShared(_ context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shared == nil {
		m.shared = map[api.Ref]api.Object{}
	}
	refs := m.refsLocked(kind, namespace)
	out := make([]api.Object, 0, len(refs))
	for _, ref := range refs {
		o, ok := m.shared[ref]
		if !ok {
			var err error
			if o, err = decodeStored(kind, m.objs[ref]); err != nil {
				return nil, err
			}
			m.shared[ref] = o
		}
		out = append(out, o)
	}
	return out, nil
}

// Apply implements Store.
func (m *Memory) Apply(_ context.Context, objs ...api.Object) error {
	encoded := make(map[api.Ref][]byte, len(objs))
	for _, o := range objs {
		ref := api.RefOf(o)
		if api.Lookup(ref.Kind) == nil {
			return fmt.Errorf("store: unknown kind %s", ref.Kind)
		}
		if ref.Name == "" {
			return fmt.Errorf("store: %s has no name", ref.Kind)
		}
		raw, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("store: encoding %s: %w", ref, err)
		}
		encoded[ref] = raw
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := map[api.Kind]bool{}
	for ref, raw := range encoded {
		if old, ok := m.objs[ref]; ok && string(old) == string(raw) {
			continue
		}
		m.objs[ref] = raw
		delete(m.shared, ref)
		changed[ref.Kind] = true
	}
	m.notifyLocked(changed)
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, refs ...api.Ref) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := map[api.Kind]bool{}
	for _, ref := range refs {
		if _, ok := m.objs[ref]; ok {
			delete(m.objs, ref)
			delete(m.shared, ref)
			changed[ref.Kind] = true
		}
	}
	m.notifyLocked(changed)
	return nil
}

// Replace swaps the whole content for objs, notifying watchers of the kinds
// that changed. The local backend uses it after reading the state file. The
// store takes ownership of objs: the caller must not modify it afterwards.
func (m *Memory) Replace(objs map[api.Ref][]byte) {
	if objs == nil {
		objs = map[api.Ref][]byte{} // a later Apply writes into it
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := map[api.Kind]bool{}
	for ref, raw := range m.objs {
		if nraw, ok := objs[ref]; !ok || string(nraw) != string(raw) {
			delete(m.shared, ref)
			changed[ref.Kind] = true
		}
	}
	for ref := range objs {
		if _, ok := m.objs[ref]; !ok {
			changed[ref.Kind] = true
		}
	}
	m.objs = objs
	m.notifyLocked(changed)
}

// Snapshot returns a copy of every stored object's JSON.
func (m *Memory) Snapshot() map[api.Ref][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[api.Ref][]byte, len(m.objs))
	for k, v := range m.objs {
		out[k] = v
	}
	return out
}

// Watch implements Store.
func (m *Memory) Watch(ctx context.Context, kinds ...api.Kind) (<-chan struct{}, error) {
	w := &watcher{kinds: map[api.Kind]bool{}, ch: make(chan struct{}, 1)}
	for _, k := range kinds {
		w.kinds[k] = true
	}
	w.ch <- struct{}{}
	out := make(chan struct{}, 1)
	m.mu.Lock()
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	resync := m.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.watchers, w)
			m.mu.Unlock()
		}()
		t := time.NewTicker(resync)
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
			default: // a notification is already pending; coalesce
			}
		}
	}()
	return out, nil
}

func (m *Memory) notifyLocked(changed map[api.Kind]bool) {
	if len(changed) == 0 {
		return
	}
	for w := range m.watchers {
		for k := range changed {
			if w.kinds[k] {
				select {
				case w.ch <- struct{}{}:
				default:
				}
				break
			}
		}
	}
}

// decodeStored turns stored JSON back into a typed object.
func decodeStored(kind api.Kind, raw []byte) (api.Object, error) {
	o := api.New(kind)
	if o == nil {
		return nil, fmt.Errorf("store: unknown kind %s", kind)
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, fmt.Errorf("store: decoding stored %s: %w", kind, err)
	}
	return o, nil
}
