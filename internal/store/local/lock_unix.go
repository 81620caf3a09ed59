//go:build unix

package local

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// lock takes the exclusive advisory lock on the lock file at path and
// returns the descriptor holding it; closing it releases the lock. Each call
// opens its own descriptor: flock locks belong to the open file description,
// so descriptors exclude each other whether they are in one process or many.
//
// Waiting blocks in flock(2), so the lock passes to the next writer as soon
// as it is released. When ctx ends first, lock returns and a goroutine
// releases the lock as soon as it is granted: a stopped process holding the
// lock must not hang a caller that is shutting down.
func lock(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := tryFlock(f)
	if ok {
		return f, nil
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	case <-ctx.Done():
		go func() {
			<-done
			f.Close()
		}()
		return nil, ctx.Err()
	}
}

// tryLock takes the lock only if it is free right now; nil means it is not.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := tryFlock(f)
	if !ok {
		f.Close()
		return nil, err
	}
	return f, nil
}

func tryFlock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case !errors.Is(err, syscall.EINTR):
			return false, err
		}
	}
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
