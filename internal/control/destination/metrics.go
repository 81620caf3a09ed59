package destination

import (
	"fmt"
	"io"
	"sync/atomic"
)

// rpc indexes per-RPC counters.
type rpc int

const (
	rpcGet rpc = iota
	rpcGetProfile
	numRPCs
)

var rpcNames = [numRPCs]string{"Get", "GetProfile"}

// Metrics are the Destination server's counters. All fields are safe for
// concurrent use; the zero value is ready.
type Metrics struct {
	streamsOpen [numRPCs]atomic.Int64
	streams     [numRPCs]atomic.Uint64
	updatesSent [numRPCs]atomic.Uint64
	overflows   [numRPCs]atomic.Uint64
	snapshots   atomic.Uint64
	snapErrors  atomic.Uint64
}

// StreamsOpen returns how many Get and GetProfile streams are open.
func (m *Metrics) StreamsOpen() (get, profile int64) {
	return m.streamsOpen[rpcGet].Load(), m.streamsOpen[rpcGetProfile].Load()
}

// UpdatesSent returns how many messages Get and GetProfile streams sent.
func (m *Metrics) UpdatesSent() (get, profile uint64) {
	return m.updatesSent[rpcGet].Load(), m.updatesSent[rpcGetProfile].Load()
}

// Overflows returns how many streams were closed because they fell behind.
func (m *Metrics) Overflows() uint64 {
	return m.overflows[rpcGet].Load() + m.overflows[rpcGetProfile].Load()
}

// Snapshots returns how many snapshots of the store were published, and how
// many attempts to build one failed.
func (m *Metrics) Snapshots() (published, failed uint64) {
	return m.snapshots.Load(), m.snapErrors.Load()
}

// WritePrometheus writes the counters in the Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	type family struct {
		name, help, typ string
		value           func(r rpc) string
	}
	fams := []family{
		{"destination_streams_open", "Open Destination streams.", "gauge",
			func(r rpc) string { return fmt.Sprint(m.streamsOpen[r].Load()) }},
		{"destination_streams_total", "Destination streams started.", "counter",
			func(r rpc) string { return fmt.Sprint(m.streams[r].Load()) }},
		{"destination_updates_sent_total", "Messages sent on Destination streams.", "counter",
			func(r rpc) string { return fmt.Sprint(m.updatesSent[r].Load()) }},
		{"destination_stream_overflows_total", "Streams closed because their update queue was full (the client fell behind).", "counter",
			func(r rpc) string { return fmt.Sprint(m.overflows[r].Load()) }},
	}
	for _, f := range fams {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ); err != nil {
			return err
		}
		for r := rpc(0); r < numRPCs; r++ {
			if _, err := fmt.Fprintf(w, "%s{rpc=%q} %s\n", f.name, rpcNames[r], f.value(r)); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintf(w, "# HELP destination_snapshots_total Store snapshots published.\n# TYPE destination_snapshots_total counter\ndestination_snapshots_total %d\n"+
		"# HELP destination_snapshot_errors_total Failed attempts to read the store.\n# TYPE destination_snapshot_errors_total counter\ndestination_snapshot_errors_total %d\n",
		m.snapshots.Load(), m.snapErrors.Load())
	return err
}
