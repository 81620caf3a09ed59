package proxy

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestExeMapping(t *testing.T) {
	const exe = "/usr/bin/weft"
	for _, tc := range []struct {
		line       string
		start, end uint64
		ok         bool
	}{
		{"00400000-021f8000 r-xp 00000000 fe:00 10028478                           /usr/bin/weft", 0x400000, 0x21f8000, true},
		{"021f8000-04427000 r--p 01df8000 fe:00 10028478   /usr/bin/weft", 0x21f8000, 0x4427000, true},
		{"04427000-044d3000 rw-p 04027000 fe:00 10028478   /usr/bin/weft", 0, 0, false},     // writable data
		{"7f0000000000-7f0000021000 r--p 00000000 fe:00 1   /usr/lib/libc.so", 0, 0, false}, // another file
		{"7ffd1000-7ffd2000 r-xp 00000000 00:00 0                  [vdso]", 0, 0, false},
		{"c000000000-c000400000 rw-p 00000000 00:00 0", 0, 0, false},
		{"garbage", 0, 0, false},
	} {
		start, end, ok := exeMapping([]byte(tc.line), exe)
		if ok != tc.ok || start != tc.start || end != tc.end {
			t.Errorf("exeMapping(%q) = %x, %x, %v; want %x, %x, %v", tc.line, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}

// TestTrimExecutable trims this test binary's pages: the resident file
// pages must drop, and the process must carry on (it runs this code).
func TestTrimExecutable(t *testing.T) {
	before := rssFileKB(t)
	advised, err := TrimExecutable()
	if err != nil {
		t.Skipf("kernel refuses MADV_PAGEOUT: %v", err)
	}
	if advised == 0 {
		t.Fatal("no mapping of the test executable found in /proc/self/maps")
	}
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB (%d MB of mappings advised)", before, after, advised>>20)
	if after >= before {
		t.Errorf("RssFile did not drop: %d kB -> %d kB", before, after)
	}
}

func rssFileKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
