package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TrimExecutable asks the kernel to drop the process's resident pages of
// its own executable's read-only mappings (code and read-only data),
// and returns how many bytes of mappings it advised.
//
// weft is one binary for every role (control plane, ingress, Kubernetes
// client, dashboard, proxy), and starting it maps ~35 MB of that file into
// the proxy's RSS (package initialisation touches it, and the kernel maps
// neighbouring cached pages on each fault), most never needed again by a
// proxy. The pages are clean and stay in the page cache: the proxy faults
// back in only what its data path runs (about 9 MB of the file under
// load), at the cost of a minor fault per page, once. Nothing is lost if
// the kernel lacks MADV_PAGEOUT (before Linux 5.4): the advice fails and
// RSS stays. The peak RSS the kernel records (VmHWM) still includes the
// start-up, before the trim.
func TrimExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("proxy: trimming the executable's pages: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("proxy: trimming the executable's pages: %w", err)
	}
	var advised int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := exeMapping(sc.Bytes(), exe)
		if !ok {
			continue
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(start))), int(end-start))
		// MADV_RANDOM first: no read-ahead, so a page the data path
		// needs comes back alone, not with its neighbours.
		_ = unix.Madvise(b, unix.MADV_RANDOM)
		if err := unix.Madvise(b, unix.MADV_PAGEOUT); err != nil {
			return advised, fmt.Errorf("proxy: trimming the executable's pages (madvise MADV_PAGEOUT): %w", err)
		}
		advised += int64(end - start)
	}
	return advised, nil
}

// exeMapping parses a /proc/self/maps line and returns its range if it
// maps exe without write permission.
func exeMapping(line []byte, exe string) (start, end uint64, ok bool) {
	// 00400000-021f8000 r-xp 00000000 fe:00 10028478   /path/to/weft
	fields := bytes.Fields(line)
	if len(fields) < 6 || string(bytes.Join(fields[5:], []byte(" "))) != exe {
		return 0, 0, false
	}
	if perms := fields[1]; len(perms) < 2 || perms[1] == 'w' {
		return 0, 0, false
	}
	a, b, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(string(a), 16, 64)
	end, err2 := strconv.ParseUint(string(b), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return 0, 0, false
	}
	return start, end, true
}
