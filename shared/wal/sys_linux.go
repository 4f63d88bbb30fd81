package wal

import (
	"os"
	"syscall"
)

// fdatasync flushes file data (and the size) without other metadata.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// mapReadOnly maps the file's first size bytes read-only, for a scan that
// reads the page cache in place instead of copying it out; unmap ends the
// mapping. The file must not shrink while mapped (a read past its end
// would fault): only recovery maps, before anything may truncate.
func mapReadOnly(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, syscall.EINVAL
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	_ = syscall.Madvise(data, syscall.MADV_SEQUENTIAL) // a hint: read ahead
	return data, func() error { return syscall.Munmap(data) }, nil
}
