package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Files of the state directory that belong to the supervisor.
const (
	MeshFile = "mesh.json"
	LockFile = "mesh.lock"
	LogDir   = "logs"
)

// ErrLocked means another supervisor holds the state directory.
var ErrLocked = errors.New("local: another 'weft up' is running for this state directory")

// ErrNoMesh means no supervisor runs for the state directory.
var ErrNoMesh = errors.New("local: no mesh is running for this state directory")

// Mesh is the content of D/mesh.json: what runs, for 'weft status', 'weft
// logs' and 'weft down'.
type Mesh struct {
	PID         int         `json:"pid"` // the supervisor
	StateDir    string      `json:"stateDir"`
	ControlAddr string      `json:"controlAddr"`
	Started     time.Time   `json:"started"`
	Updated     time.Time   `json:"updated"`
	Components  []Component `json:"components"`
	// Problems are Deployments ("namespace/name") the supervisor cannot
	// run, with why.
	Problems map[string]string `json:"problems,omitempty"`
}

// Component is one running unit: the control plane, the ingress, or one
// replica of a Deployment (a pod: its proxy and its containers).
type Component struct {
	Name       string            `json:"name"`
	Namespace  string            `json:"namespace"`
	Kind       string            `json:"kind"`            // "control", "ingress" or "Deployment"
	Owner      string            `json:"owner,omitempty"` // the Deployment, for replicas
	Ready      bool              `json:"ready"`
	Restarts   int               `json:"restarts"`
	Addresses  map[string]string `json:"addresses"`
	Processes  []ProcessInfo     `json:"processes"`
	Terminated bool              `json:"terminating,omitempty"`
}

// ProcessInfo is one process of a component.
type ProcessInfo struct {
	Name     string `json:"name"` // container name, "proxy" for the sidecar
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Log      string `json:"log"`
	LastExit string `json:"lastExit,omitempty"`
}

// WriteMesh writes D/mesh.json atomically.
func WriteMesh(dir string, m *Mesh) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("local: encoding %s: %w", MeshFile, err)
	}
	tmp, err := os.CreateTemp(dir, ".mesh-*.json")
	if err != nil {
		return fmt.Errorf("local: writing %s: %w", MeshFile, err)
	}
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("local: writing %s: %w", MeshFile, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("local: writing %s: %w", MeshFile, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, MeshFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("local: writing %s: %w", MeshFile, err)
	}
	return nil
}

// ReadMesh returns the running mesh of state directory dir, or an error
// wrapping ErrNoMesh when none runs (no supervisor holds the lock).
func ReadMesh(dir string) (*Mesh, error) {
	if !Running(dir) {
		return nil, fmt.Errorf("%w (%s); start one with 'weft up'", ErrNoMesh, dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, MeshFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w yet (%s): 'weft up' is still starting", ErrNoMesh, dir)
		}
		return nil, fmt.Errorf("local: reading %s: %w", MeshFile, err)
	}
	var m Mesh
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("local: reading %s: %w", filepath.Join(dir, MeshFile), err)
	}
	return &m, nil
}

// Lock is the supervisor's hold on a state directory.
type Lock struct{ f *os.File }

// AcquireLock takes D/mesh.lock without waiting; it returns an error wrapping
// ErrLocked if another supervisor holds it.
func AcquireLock(dir string) (*Lock, error) {
	// Private, like the store: it holds identity material and logs.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("local: opening %s: %w", LockFile, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s); stop it with 'weft down' or use another --state-dir", ErrLocked, dir)
		}
		return nil, fmt.Errorf("local: locking %s: %w", filepath.Join(dir, LockFile), err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() error {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

// Running reports whether a supervisor holds dir's lock.
func Running(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
