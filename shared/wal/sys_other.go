//go:build !linux

package wal

import (
	"errors"
	"os"
)

// fdatasync falls back to a full fsync where fdatasync is unavailable.
func fdatasync(f *os.File) error { return f.Sync() }

// mapReadOnly is not used off Linux: scans read the file.
func mapReadOnly(*os.File, int64) ([]byte, func() error, error) {
	return nil, nil, errors.ErrUnsupported
}
