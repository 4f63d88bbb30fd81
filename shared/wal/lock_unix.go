//go:build unix

package wal

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock on name. The lock lives as
// long as the returned file stays open.
func lockFile(name string) (io.Closer, error) {
	f, err := OpenPrivate(name, os.O_RDWR)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, &os.PathError{Op: "flock", Path: name, Err: err}
	}
	return f, nil
}
