package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// TrimExecutable drops from the process's resident set the pages of its
// own executable's read-only mappings (code and read-only data) and
// returns how many bytes of mappings it trimmed.
//
// weft is one binary for every role (control plane, ingress, Kubernetes
// client, dashboard, proxy), and starting it maps ~35 MB of that file into
// the proxy's RSS (package initialisation touches it, and the kernel maps
// neighbouring cached pages on each fault), most never needed again by a
// proxy. MADV_DONTNEED unmaps them from this process only: the file's
// pages stay in the page cache (shared with every other weft process,
// which MADV_PAGEOUT would refuse to touch), and the data path faults back
// what it runs, a minor fault per page, once. MADV_RANDOM before it stops
// read-ahead, so that such a page comes back alone, not with its
// neighbours. A mapping with private (copied-on-write) pages, such as
// relocated data of a position-independent build, is left alone: dropping
// those would lose the writes. The peak RSS the kernel records (VmHWM)
// still includes the start-up, before the trim.
func TrimExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("proxy: trimming the executable's pages: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("proxy: trimming the executable's pages: %w", err)
	}
	var trimmed int64
	for _, m := range exeMappings(smaps, exe) {
		// The raw system call: these ranges are not Go memory, so no
		// []byte (and no unsafe.Pointer) is made over them.
		madvise(m, unix.MADV_RANDOM)
		if err := madvise(m, unix.MADV_DONTNEED); err != nil {
			return trimmed, fmt.Errorf("proxy: trimming the executable's pages (madvise): %w", err)
		}
		trimmed += int64(m.end - m.start)
	}
	return trimmed, nil
}

type mapping struct{ start, end uint64 }

func madvise(m mapping, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// exeMappings returns the read-only mappings of exe in a /proc/PID/smaps
// text that hold no private (anonymous, copied-on-write) pages.
func exeMappings(smaps []byte, exe string) []mapping {
	var out []mapping
	var cur mapping
	inExe := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Bytes()
		if m, ok := exeMapping(line, exe); ok {
			cur, inExe = m, true
			continue
		}
		if isMappingHeader(line) {
			inExe = false
			continue
		}
		if !inExe {
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			inExe = false
			if f := bytes.Fields(v); len(f) > 0 && string(f[0]) == "0" {
				out = append(out, cur)
			}
		}
	}
	return out
}

// isMappingHeader reports whether a smaps line starts a mapping
// ("start-end perms ..."), as opposed to a "Field: value" line.
func isMappingHeader(line []byte) bool {
	f := bytes.Fields(line)
	return len(f) >= 5 && bytes.IndexByte(f[0], '-') > 0 && !bytes.HasSuffix(f[0], []byte(":"))
}

// exeMapping parses a mapping header line and returns its range if it
// maps exe without write permission.
func exeMapping(line []byte, exe string) (mapping, bool) {
	// 00400000-021f8000 r-xp 00000000 fe:00 10028478   /path/to/weft
	fields := bytes.Fields(line)
	if len(fields) < 6 || string(bytes.Join(fields[5:], []byte(" "))) != exe {
		return mapping{}, false
	}
	if perms := fields[1]; len(perms) < 2 || perms[1] == 'w' {
		return mapping{}, false
	}
	a, b, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(string(a), 16, 64)
	end, err2 := strconv.ParseUint(string(b), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return mapping{}, false
	}
	return mapping{start, end}, true
}
