// Package local is the Store of local mode: every object of a mesh lives in
// one JSON file in the state directory, shared by every weft process that
// opens it.
//
// Layout of a state directory D:
//
//	D/resources.json  every object, rewritten whole by each change
//	D/resources.lock  flock'ed for the duration of each read-modify-write
//
// A change is made under an exclusive flock on resources.lock: read the
// file, apply the change, write a temporary file, fsync it and rename it over
// resources.json. Readers never take the lock: a rename is atomic, so they see
// the old file or the new one, never a half-written one. Two weft processes
// applying at the same time therefore never lose an update, and a refused or
// failed change leaves the file exactly as it was.
//
// Each Store keeps the objects in a store.Memory, which serves Get, List and
// Watch. A background goroutine notices writes made by other processes
// (fsnotify on D, or polling when fsnotify is unavailable) and swaps the
// index, so Watch fires in every process that has the store open.
package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

const (
	// FileName is the state file inside the state directory.
	FileName = "resources.json"
	// LockName is the lock file inside the state directory.
	LockName = "resources.lock"

	// tempPattern names the temporary files a write renames into place.
	tempPattern = ".resources-*.tmp"

	// formatTag marks the file's format so a future change can be detected.
	formatTag = "weft.io/resources/v1"

	// DefaultPollInterval is how often the file is checked for changes by
	// other processes when fsnotify is unavailable.
	DefaultPollInterval = 250 * time.Millisecond
	// safetyPollInterval is how often the file is checked even when fsnotify
	// works, in case an event was lost (overflowed queue, odd file systems).
	safetyPollInterval = 2 * time.Second
)

// Options tune a Store; the zero value is the production setting.
type Options struct {
	// Logger receives reload problems; nil means slog.Default().
	Logger *slog.Logger
	// PollInterval is the fallback polling period; zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// NoFSNotify disables fsnotify so that only polling notices other
	// processes' writes (tests exercise the fallback with it).
	NoFSNotify bool
	// Resync is the watch resync period; zero means store.DefaultResync.
	Resync time.Duration
	// NoFollow skips watching for other processes' writes, for one-shot
	// commands: Get and List still see them (each checks the file), but
	// Watch fires only for this process's writes and on resync.
	NoFollow bool
}

// Store is a store.Store backed by a state directory. It is safe for
// concurrent use by many goroutines and many processes.
type Store struct {
	dir      string
	path     string
	lockPath string
	opts     Options
	log      *slog.Logger
	mem      *store.Memory

	// writeMu serialises this process's writers, so they queue here rather
	// than each holding a descriptor blocked in flock.
	writeMu sync.Mutex
	closed  bool

	// loadMu guards the fields below and makes "read the file, install it in
	// mem" atomic, so an older version can never replace a newer one.
	loadMu sync.Mutex
	// data is the file content mem was built from, nil when there was no
	// file. Comparing content (not just identity) makes reuse of the index
	// safe: a read-modify-write builds on mem only when the file holds
	// exactly what mem was built from.
	data   []byte
	loaded fileID // identity of that file version, to skip reading it again
	bad    fileID // a version that failed to parse, already reported

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the state directory dir and loads its
// objects. A missing resources.json is an empty store; a corrupt one is an
// error naming the file. Close releases the store.
func Open(dir string) (*Store, error) { return OpenWithOptions(dir, Options{}) }

// OpenWithOptions is Open with tuning.
func OpenWithOptions(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store/local: empty state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store/local: creating state directory: %w", err)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	s := &Store{
		dir:      dir,
		path:     filepath.Join(dir, FileName),
		lockPath: filepath.Join(dir, LockName),
		opts:     opts,
		log:      opts.Logger,
		mem:      store.NewMemory(),
		done:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "store/local", "file", s.path)
	s.mem.Resync = opts.Resync
	if err := s.removeStaleTemps(); err != nil {
		return nil, err
	}
	data, id, err := readFile(s.path)
	if err != nil {
		return nil, err
	}
	state, err := parseFile(s.path, data)
	if err != nil {
		return nil, err
	}
	s.install(state, data, id)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if opts.NoFollow {
		close(s.done)
	} else {
		go s.follow(ctx)
	}
	return s, nil
}

// removeStaleTemps creates the lock file and removes temporary files left by
// a writer that died between creating and renaming one. Writers create them
// only while holding the lock, so under the lock every one found is stale.
// When another process holds the lock, cleaning is left for a later Open:
// opening never waits.
func (s *Store) removeStaleTemps() error {
	f, err := tryLock(s.lockPath)
	if err != nil {
		return fmt.Errorf("store/local: locking %s: %w", s.lockPath, err)
	}
	if f == nil {
		return nil
	}
	defer f.Close()
	stale, _ := filepath.Glob(filepath.Join(s.dir, tempPattern))
	for _, p := range stale {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot remove a stale temporary file", "path", p, "err", err)
		}
	}
	return nil
}

// Close stops following the file; later writes fail. Channels returned by
// Watch close when their own context ends.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.writeMu.Lock()
		s.closed = true
		s.writeMu.Unlock()
	})
	return nil
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Get implements store.Store. It reads the in-memory index, first catching
// up with the file if another process changed it.
func (s *Store) Get(ctx context.Context, ref api.Ref) (api.Object, error) {
	s.refresh(false)
	return s.mem.Get(ctx, ref)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	s.refresh(false)
	return s.mem.List(ctx, kind, namespace)
}

// ListShared implements store.SharedLister.
func (s *Store) ListShared(ctx context.Context, kind api.Kind, namespace string) ([]api.Object, error) {
	s.refresh(false)
	return s.mem.ListShared(ctx, kind, namespace)
}

// Watch implements store.Store. It fires for changes made by this process
// and, through the file watcher, by every other process.
func (s *Store) Watch(ctx context.Context, kinds ...api.Kind) (<-chan struct{}, error) {
	return s.mem.Watch(ctx, kinds...)
}

// Apply implements store.Store. Objects are validated and encoded before the
// file is touched; the file changes only if every object is accepted.
//
// Like an API server, the store sets metadata.creationTimestamp on objects
// that have none: the stored object's, or now for a new one.
func (s *Store) Apply(ctx context.Context, objs ...api.Object) error {
	type item struct {
		ref api.Ref
		raw []byte
		obj api.Object // non-nil when creationTimestamp must be filled in
	}
	items := make([]item, 0, len(objs))
	for _, o := range objs {
		ref := api.RefOf(o)
		if api.Lookup(ref.Kind) == nil {
			return fmt.Errorf("store/local: unknown kind %q (apiVersion/kind not set?)", ref.Kind)
		}
		if ref.Name == "" {
			return fmt.Errorf("store/local: %s has no name", ref.Kind)
		}
		raw, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("store/local: encoding %s: %w", ref, err)
		}
		it := item{ref: ref, raw: raw}
		if ts := o.GetCreationTimestamp(); ts.IsZero() {
			// A private copy, so the caller's object is never modified.
			c := api.New(ref.Kind)
			if err := json.Unmarshal(raw, c); err != nil {
				return fmt.Errorf("store/local: copying %s: %w", ref, err)
			}
			it.obj = c
		}
		items = append(items, it)
	}
	now := metav1.Now().Rfc3339Copy()
	return s.update(ctx, func(state map[api.Ref][]byte) (bool, error) {
		changed := false
		for _, it := range items {
			old, exists := state[it.ref]
			raw := it.raw
			if it.obj != nil {
				ts := now
				if exists {
					if t := creationTimestamp(old); !t.IsZero() {
						ts = t
					}
				}
				it.obj.SetCreationTimestamp(ts)
				var err error
				if raw, err = json.Marshal(it.obj); err != nil {
					return false, fmt.Errorf("store/local: encoding %s: %w", it.ref, err)
				}
			}
			if exists && bytes.Equal(old, raw) {
				continue
			}
			state[it.ref] = raw
			changed = true
		}
		return changed, nil
	})
}

// Delete implements store.Store. Missing objects are ignored.
func (s *Store) Delete(ctx context.Context, refs ...api.Ref) error {
	return s.update(ctx, func(state map[api.Ref][]byte) (bool, error) {
		changed := false
		for _, ref := range refs {
			if _, ok := state[ref]; ok {
				delete(state, ref)
				changed = true
			}
		}
		return changed, nil
	})
}

// update runs one read-modify-write of the file under the lock. mutate
// changes state in place and reports whether anything changed; the file is
// rewritten only then. On any error the file is left untouched.
func (s *Store) update(ctx context.Context, mutate func(state map[api.Ref][]byte) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/local: %w", err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return errors.New("store/local: store is closed")
	}
	lf, err := lock(ctx, s.lockPath)
	if err != nil {
		return fmt.Errorf("store/local: waiting for the lock on %s (held by another weft process?): %w", s.lockPath, err)
	}
	defer lf.Close() // releases the lock

	data, id, err := readFile(s.path)
	if err != nil {
		return err
	}
	s.loadMu.Lock()
	var state map[api.Ref][]byte
	if sameContent(data, s.data) {
		state = s.mem.Snapshot() // what the file holds, already decoded
	}
	s.loadMu.Unlock()
	if state == nil {
		if state, err = parseFile(s.path, data); err != nil {
			return err
		}
	}
	changed, err := mutate(state)
	if err != nil {
		return err
	}
	if changed {
		data = encodeState(state)
		if id, err = writeState(s.dir, s.path, data); err != nil {
			return err
		}
	}
	s.loadMu.Lock()
	s.install(state, data, id)
	s.loadMu.Unlock()
	return nil
}

// install makes state (decoded from data, the file version id) the index.
// Callers hold loadMu, except Open before anyone else can see s.
func (s *Store) install(state map[api.Ref][]byte, data []byte, id fileID) {
	s.mem.Replace(state)
	s.data = data
	s.loaded = id
}

// refresh reloads the file if it changed since it was last loaded. A file
// that cannot be parsed keeps the last good index: a running mesh never
// loses its configuration because someone broke the file.
//
// The file's identity (inode, size, mtime) tells cheaply whether it changed;
// force reads it anyway, for when fsnotify has said it did (an inode reused
// within one mtime tick could otherwise hide a change until the next one).
// Content equal to what the index was built from is not decoded again.
func (s *Store) refresh(force bool) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if !force {
		id, err := statID(s.path)
		switch {
		case err == nil && (id == s.loaded || id == s.bad):
			return // unchanged, or the same broken version already reported
		case errors.Is(err, os.ErrNotExist) && s.data == nil:
			return
		}
	}
	data, id, err := readFile(s.path)
	if err != nil {
		s.log.Error("cannot read the state file; keeping the last good objects", "err", err)
		return
	}
	if sameContent(data, s.data) {
		s.loaded = id
		return
	}
	state, err := parseFile(s.path, data)
	if err != nil {
		if id != s.bad {
			s.bad = id
			s.log.Error("state file unreadable; keeping the last good objects", "err", err)
		}
		return
	}
	if data == nil {
		s.log.Warn("state file was removed; the store is now empty")
	}
	s.install(state, data, id)
}

// sameContent compares file contents, nil meaning "no file".
func sameContent(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

// follow notices other processes' writes until ctx ends.
func (s *Store) follow(ctx context.Context) {
	defer close(s.done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	interval := s.opts.PollInterval
	if !s.opts.NoFSNotify {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			if err = w.Add(s.dir); err != nil {
				w.Close()
			}
		}
		if err != nil {
			s.log.Warn("fsnotify unavailable; polling the state file", "interval", interval, "err", err)
		} else {
			defer w.Close()
			events, errs = w.Events, w.Errors
			interval = safetyPollInterval
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Base(ev.Name) == FileName {
				s.refresh(true)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Usually a queue overflow: an event may be lost, so look now.
			s.log.Warn("fsnotify error", "err", err)
			s.refresh(true)
		case <-t.C:
			s.refresh(false)
		}
	}
}

// fileFormat is resources.json. Objects are sorted by kind, namespace and
// name, one per line, so the file diffs well.
type fileFormat struct {
	Format  string            `json:"format"`
	Objects []json.RawMessage `json:"objects"`
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	return idOf(fi), nil
}

// readFile reads the state file and its identity; a missing file is nil
// data and a zero fileID.
func readFile(path string) ([]byte, fileID, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fileID{}, nil
	}
	if err != nil {
		return nil, fileID{}, fmt.Errorf("store/local: reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileID{}, fmt.Errorf("store/local: reading %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("store/local: reading %s: %w", path, err)
	}
	if data == nil {
		data = []byte{} // an empty file is not a missing one
	}
	return data, idOf(fi), nil
}

// parseFile decodes the content of the file at path; nil data (no file) is
// an empty state.
func parseFile(path string, data []byte) (map[api.Ref][]byte, error) {
	if data == nil {
		return map[api.Ref][]byte{}, nil
	}
	state, err := parseState(data)
	if err != nil {
		return nil, fmt.Errorf("store/local: %s is corrupt: %w; repair it, or move it away to start with an empty store", path, err)
	}
	return state, nil
}

// parseState decodes the content of a state file. Every object is decoded
// into its kind's Go type and encoded again, so the index holds exactly what
// Apply would have stored and a damaged object is reported here rather than
// by a later Get.
func parseState(data []byte) (map[api.Ref][]byte, error) {
	var ff fileFormat
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("file is empty")
	}
	strict, err := sigsjson.UnmarshalStrict(data, &ff, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, describeJSONError(data, err)
	}
	if len(strict) > 0 {
		return nil, strict[0]
	}
	if ff.Format != formatTag {
		return nil, fmt.Errorf("format is %q, want %q", ff.Format, formatTag)
	}
	state := make(map[api.Ref][]byte, len(ff.Objects))
	for i, raw := range ff.Objects {
		var head metav1.TypeMeta
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &head); err != nil {
			return nil, fmt.Errorf("objects[%d]: %w", i, err)
		}
		if head.APIVersion == "" || head.Kind == "" {
			return nil, fmt.Errorf("objects[%d]: apiVersion and kind are required", i)
		}
		gvk := head.GroupVersionKind()
		kind := api.Kind{Group: gvk.Group, Kind: gvk.Kind}
		o := api.New(kind)
		if o == nil {
			return nil, fmt.Errorf("objects[%d]: unknown kind %q (apiVersion %q)", i, head.Kind, head.APIVersion)
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, o); err != nil {
			return nil, fmt.Errorf("objects[%d] (%s): %w", i, kind, err)
		}
		ref := api.RefOf(o)
		if ref.Name == "" {
			return nil, fmt.Errorf("objects[%d] (%s): no metadata.name", i, kind)
		}
		if _, dup := state[ref]; dup {
			return nil, fmt.Errorf("objects[%d]: %s appears twice", i, ref)
		}
		canon, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("objects[%d] (%s): %w", i, ref, err)
		}
		state[ref] = canon
	}
	return state, nil
}

// describeJSONError adds the line number to a syntax error.
func describeJSONError(data []byte, err error) error {
	if ok, off := sigsjson.SyntaxErrorOffset(err); ok {
		line := 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}

// encodeState renders a state file.
func encodeState(state map[api.Ref][]byte) []byte {
	refs := make([]api.Ref, 0, len(state))
	for ref := range state {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if ak, bk := a.Kind.String(), b.Kind.String(); ak != bk {
			return ak < bk
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "{\"format\": %q, \"objects\": [", formatTag)
	for i, ref := range refs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n")
		buf.Write(state[ref])
	}
	buf.WriteString("\n]}\n")
	return buf.Bytes()
}

// writeState replaces the state file atomically and durably: write a
// temporary file in the same directory, fsync it, rename it over the old
// file, fsync the directory. It returns the new file's identity.
func writeState(dir, path string, data []byte) (fileID, error) {
	tmp, err := os.CreateTemp(dir, tempPattern) // mode 0600
	if err != nil {
		return fileID{}, fmt.Errorf("store/local: writing %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fileID{}, fmt.Errorf("store/local: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fileID{}, fmt.Errorf("store/local: syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fileID{}, fmt.Errorf("store/local: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fileID{}, fmt.Errorf("store/local: replacing %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: makes the rename itself durable
		d.Close()
	}
	id, err := statID(path)
	if err != nil {
		return fileID{}, fmt.Errorf("store/local: %w", err)
	}
	return id, nil
}

func creationTimestamp(raw []byte) metav1.Time {
	var o struct {
		Metadata struct {
			CreationTimestamp metav1.Time `json:"creationTimestamp"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &o) // stored objects were validated on load
	return o.Metadata.CreationTimestamp
}
