package viz

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// TapEvent is one finished request as tap reports it, the input of 'weft viz
// top'.
type TapEvent struct {
	Source, Destination string
	Method, Path        string
	Latency             time.Duration
	Success             bool
}

// TopRow is one line of 'weft viz top': a (source, destination, method,
// path) and what its requests did.
type TopRow struct {
	Source, Destination, Method, Path string
	Count                             int
	Best, Worst, Last                 time.Duration
	Successes                         int
}

// Top aggregates tap events into TopRows.
type Top struct {
	rows map[[4]string]*TopRow
}

// Add counts e.
func (t *Top) Add(e TapEvent) {
	if t.rows == nil {
		t.rows = map[[4]string]*TopRow{}
	}
	k := [4]string{e.Source, e.Destination, e.Method, e.Path}
	r := t.rows[k]
	if r == nil {
		r = &TopRow{Source: e.Source, Destination: e.Destination, Method: e.Method, Path: e.Path, Best: e.Latency, Worst: e.Latency}
		t.rows[k] = r
	}
	r.Count++
	r.Last = e.Latency
	r.Best = min(r.Best, e.Latency)
	r.Worst = max(r.Worst, e.Latency)
	if e.Success {
		r.Successes++
	}
}

// Rows returns the rows, most frequent first.
func (t *Top) Rows() []TopRow {
	out := make([]TopRow, 0, len(t.rows))
	for _, r := range t.rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return strings.Join([]string{out[i].Source, out[i].Destination, out[i].Method, out[i].Path}, " ") <
			strings.Join([]string{out[j].Source, out[j].Destination, out[j].Method, out[j].Path}, " ")
	})
	return out
}

// RenderTop writes at most limit rows (all when limit <= 0) as Linkerd's
// top table: Source Destination Method Path Count Best Worst Last Success Rate.
func RenderTop(w io.Writer, rows []TopRow, limit int) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Source\tDestination\tMethod\tPath\tCount\tBest\tWorst\tLast\tSuccess Rate")
	for i, r := range rows {
		if limit > 0 && i == limit {
			break
		}
		sr := "-"
		if r.Count > 0 {
			sr = fmt.Sprintf("%.2f%%", 100*float64(r.Successes)/float64(r.Count))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Source, r.Destination, r.Method, r.Path, r.Count,
			latency(r.Best), latency(r.Worst), latency(r.Last), sr)
	}
	return tw.Flush()
}

// latency prints a duration as Linkerd's top does: µs below 1 ms, else ms.
func latency(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
