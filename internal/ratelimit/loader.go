package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Load reads configuration from files and directories (every *.yaml and
// *.yml directly inside a directory, in name order) plus any built-in
// documents, and compiles them. One bad file fails the whole load, so a
// caller keeps its last good Rules.
func Load(paths []string, builtin map[string][]byte, st *Stats) (*Rules, error) {
	var configs []*Config
	files, err := configFiles(paths)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: reading config: %w", err)
		}
		c, err := ParseConfig(f, data)
		if err != nil {
			return nil, err
		}
		configs = append(configs, c)
	}
	names := make([]string, 0, len(builtin))
	for name := range builtin {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c, err := ParseConfig(name, builtin[name])
		if err != nil {
			return nil, err
		}
		configs = append(configs, c)
	}
	return Compile(configs, st)
}

func configFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: --config %s: %w", p, err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: --config %s: %w", p, err)
		}
		for _, e := range ents {
			if !e.IsDir() && isConfigName(e.Name()) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	return files, nil
}

func isConfigName(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"))
}

// reloadDelay coalesces the burst of events one save makes (editors write,
// rename and chmod) into one reload.
const reloadDelay = 100 * time.Millisecond

// Watcher reloads the configuration whenever a file under its paths
// changes. It watches the directories (a file's parent), so files replaced
// by rename, as editors and Kubernetes ConfigMaps do, are seen.
//
// It is created before the first load: a change made between that load
// and Run is then still an event Run sees, not a change lost.
type Watcher struct {
	paths []string
	w     *fsnotify.Watcher
}

// NewWatcher starts watching paths' directories.
func NewWatcher(paths []string) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: watching config: %w", err)
	}
	dirs := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("ratelimit: --config %s: %w", p, err)
		}
		fi, err := os.Stat(abs)
		if err != nil || !fi.IsDir() {
			abs = filepath.Dir(abs)
		}
		if dirs[abs] {
			continue
		}
		dirs[abs] = true
		if err := w.Add(abs); err != nil {
			w.Close()
			return nil, fmt.Errorf("ratelimit: --config %s: watching %s: %w", p, abs, err)
		}
	}
	return &Watcher{paths: paths, w: w}, nil
}

// Close stops watching.
func (cw *Watcher) Close() error { return cw.w.Close() }

// Run reloads the configuration into svc on changes until ctx ends, then
// closes the watcher. A bad configuration is logged and counted, and the
// last good one stays in force.
func (cw *Watcher) Run(ctx context.Context, builtin map[string][]byte, svc *Service, log *slog.Logger) {
	defer cw.w.Close()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-cw.w.Events:
			if !ok {
				return
			}
			if !isConfigName(filepath.Base(ev.Name)) && !strings.HasPrefix(filepath.Base(ev.Name), "..") {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(reloadDelay)
				fire = timer.C
			} else {
				timer.Reset(reloadDelay)
			}
		case err, ok := <-cw.w.Errors:
			if !ok {
				return
			}
			log.Warn("ratelimit: config watcher", "err", err)
		case <-fire:
			timer, fire = nil, nil
			Reload(cw.paths, builtin, svc, log)
		}
	}
}

// Reload loads the configuration and, if it is good, swaps it in.
func Reload(paths []string, builtin map[string][]byte, svc *Service, log *slog.Logger) error {
	st := svc.Stats()
	r, err := Load(paths, builtin, st)
	if err != nil {
		st.configLoads.With(resultError).Inc()
		log.Error("ratelimit: config not loaded; keeping the last good one", "err", err)
		return err
	}
	svc.SetRules(r)
	st.configLoads.With(resultSuccess).Inc()
	log.Info("ratelimit: config loaded", "domains", r.Domains())
	return nil
}
