package proxy

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
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

// DefaultRuntime is what weft proxy runs with unless told otherwise: one
// thread running Go code, as Linkerd runs its sidecars with one runtime
// worker. With more, each wake-up of a goroutine (several per request)
// also wakes an idle thread that spins looking for work: at 1,000 req/s
// that was 12% of the proxy's CPU in futex alone, and one thread costs
// 20-25% less CPU per request at that rate, with the same maximum
// throughput on the 2-core benchmark machine. --cores raises it for
// proxies that must carry more than one core's worth.
//
// The collector keeps Go's defaults (GOGC=100, no memory limit). Measured
// on weft proxy at 4,000 req/s, GOGC 50 / 100 / 200 cost 0.105 / 0.099 /
// 0.091 CPU-s per 1k requests for 22.9 / 24.5 / 29.7 MB RSS: each halving
// buys 1.5-5 MB for ~7% more CPU, and a memory limit low enough to matter
// (8 MiB) made the collector run constantly (2.5x the CPU). $GOGC and
// $GOMEMLIMIT still set them. See BENCHMARKS.md (proxy data path).
var DefaultRuntime = Runtime{Procs: 1}

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
	// Read GOGC without setting it (SetGCPercent(-1) would switch the
	// collector off for a moment).
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	return fmt.Sprintf("GOMAXPROCS=%d GOGC=%d GOMEMLIMIT=%d", runtime.GOMAXPROCS(0), int32(gogc[0].Value.Uint64()), debug.SetMemoryLimit(-1)) // int32: GOGC=off reads as -1
}
