package proxy

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// Runtime is the Go runtime's configuration for a proxy process. A sidecar
// runs beside every replica, so it should hold a small, steady footprint
// and spend little CPU per request at the modest rates most replicas see.
// Fields left zero keep Go's defaults; the environment (GOMAXPROCS, GOGC,
// GOMEMLIMIT) wins over every field, so an operator can always override.
type Runtime struct {
	// Procs is GOMAXPROCS: how many threads run Go code at once.
	Procs int
	// GCPercent is GOGC: the heap grows by this percentage of the live
	// heap between collections. Negative turns the collector off.
	GCPercent int
	// MemoryLimit is GOMEMLIMIT in bytes: a soft limit under which the
	// collector runs more often rather than let the heap grow.
	MemoryLimit int64
}

// DefaultRuntime is what weft proxy runs with (see BENCHMARKS.md for the
// measurements behind it).
var DefaultRuntime = Runtime{}

// Apply sets the runtime as r says, except where the environment already
// did, and returns a description of the result for the log.
func (r Runtime) Apply() string {
	if r.Procs > 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(r.Procs)
	}
	if r.GCPercent != 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(r.GCPercent)
	}
	if r.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(r.MemoryLimit)
	}
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	return fmt.Sprintf("GOMAXPROCS=%d GOGC=%d GOMEMLIMIT=%d", runtime.GOMAXPROCS(0), gogc, debug.SetMemoryLimit(-1))
}
