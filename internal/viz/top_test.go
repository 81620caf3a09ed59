package viz

import (
	"strings"
	"testing"
	"time"
)

func TestTop(t *testing.T) {
	var top Top
	ev := func(path string, ms int, ok bool) TapEvent {
		return TapEvent{Source: "face-1", Destination: "smiley-1", Method: "GET", Path: path, Latency: time.Duration(ms) * time.Millisecond, Success: ok}
	}
	top.Add(ev("/smiley", 5, true))
	top.Add(ev("/smiley", 2, true))
	top.Add(ev("/smiley", 9, false))
	top.Add(ev("/smiley", 3, true))
	top.Add(TapEvent{Source: "face-1", Destination: "color-1", Method: "GET", Path: "/color", Latency: 800 * time.Microsecond, Success: true})
	var b strings.Builder
	if err := RenderTop(&b, top.Rows(), 0); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"Source  Destination  Method  Path     Count  Best   Worst  Last   Success Rate\n" +
		"face-1  smiley-1     GET     /smiley  4      2ms    9ms    3ms    75.00%\n" +
		"face-1  color-1      GET     /color   1      800µs  800µs  800µs  100.00%\n"
	if b.String() != want {
		t.Errorf("top table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	RenderTop(&b, top.Rows(), 1)
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Errorf("limit 1 printed %d lines:\n%s", n, b.String())
	}
}
