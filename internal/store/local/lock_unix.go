//go:build unix

package local

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive advisory lock on f, blocking until it is free.
// flock locks belong to the open file description, so they exclude other
// processes and other descriptors of this one, but not goroutines sharing f:
// Store pairs it with a mutex.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func funlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// fileID identifies one version of a file: every write is a rename of a new
// file, so the inode changes even when size and mtime happen to match.
type fileID struct {
	ino, size, mtime int64
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(st.Ino)
	}
	return id
}
