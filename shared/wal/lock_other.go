//go:build !unix

package wal

import (
	"io"
	"os"
)

// lockFile only creates the lock file where flock is unavailable; such
// platforms get no protection against a second process.
func lockFile(name string) (io.Closer, error) {
	return OpenPrivate(name, os.O_RDWR)
}
