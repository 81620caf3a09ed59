package proxy

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestExeMappings(t *testing.T) {
	const smaps = `00400000-021f8000 r-xp 00000000 fe:00 10028478                           /usr/bin/weft
Size:              30688 kB
Rss:               12000 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
021f8000-04427000 r--p 01df8000 fe:00 10028478   /usr/bin/weft
Size:              35000 kB
Anonymous:             0 kB
04427000-044d3000 rw-p 04027000 fe:00 10028478   /usr/bin/weft
Anonymous:           100 kB
05000000-05001000 r--p 04100000 fe:00 10028478   /usr/bin/weft
Anonymous:             4 kB
7f0000000000-7f0000021000 r--p 00000000 fe:00 1   /usr/lib/libc.so
Anonymous:             0 kB
c000000000-c000400000 rw-p 00000000 00:00 0
Anonymous:          4096 kB
7ffd1000-7ffd2000 r-xp 00000000 00:00 0                  [vdso]
Anonymous:             0 kB
`
	got := exeMappings([]byte(smaps), "/usr/bin/weft")
	want := []mapping{{0x400000, 0x21f8000}, {0x21f8000, 0x4427000}} // not: writable, copied-on-write, other files
	if len(got) != len(want) {
		t.Fatalf("exeMappings = %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %x, want %x", i, got[i], want[i])
		}
	}
	if m := exeMappings([]byte("garbage\n"), "/usr/bin/weft"); len(m) != 0 {
		t.Errorf("garbage gave %x", m)
	}
}

// TestTrimExecutable trims this test binary's pages: the resident file
// pages must drop, and the process must carry on (it runs this code).
func TestTrimExecutable(t *testing.T) {
	before := rssFileKB(t)
	trimmed, err := TrimExecutable()
	if err != nil {
		t.Fatal(err)
	}
	if trimmed == 0 {
		t.Fatal("no mapping of the test executable found in /proc/self/smaps")
	}
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB (%d MB of mappings trimmed)", before, after, trimmed>>20)
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
