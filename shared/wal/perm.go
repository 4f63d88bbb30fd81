package wal

import (
	"errors"
	"io/fs"
	"os"
)

// DirMode and FileMode are the permissions of everything under a server's
// data directory: persistent message bodies and definitions are for the
// server's user alone. They are applied with chmod after creation, so the
// umask neither widens nor narrows them.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// MkdirPrivate creates dir and any missing parents with DirMode, and gives
// dir itself DirMode if it already existed (a data directory made by an
// older version, or by hand).
func MkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	return os.Chmod(dir, DirMode)
}

// OpenPrivate is os.OpenFile with O_CREATE added, giving the file FileMode
// whether it was created or already existed.
func OpenPrivate(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|os.O_CREATE, FileMode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// PrivateFiles makes the files that other code (a library such as Badger,
// which creates its files 0666 less the umask and has no option for it)
// creates in dir from now on come out FileMode and its directories
// DirMode. On Linux it gives dir a default POSIX ACL that grants the owner
// alone, which the kernel intersects with the mode each create asks for,
// in place of the umask, for that directory only. ErrNoPrivateFiles says
// the file system (or the OS) has no such ACLs; dir's own DirMode still
// keeps other users out of what it holds.
func PrivateFiles(dir string) error { return privateFiles(dir) }

// ErrNoPrivateFiles is PrivateFiles' answer where default ACLs are not
// supported.
var ErrNoPrivateFiles = errors.New("default ACLs not supported")

// ChmodFiles gives every regular file directly in dir FileMode (for files
// that were created before PrivateFiles, or where it is not supported).
func ChmodFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := os.Chmod(dir+string(os.PathSeparator)+e.Name(), FileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// chmodFS is implemented by file systems whose files have modes (OSFS).
type chmodFS interface {
	Chmod(name string, mode os.FileMode) error
}

// tighten gives the named files FileMode where fsys has modes; files that
// are gone are skipped. The log uses it on what an older version left.
func tighten(fsys FS, names ...string) error {
	c, ok := fsys.(chmodFS)
	if !ok {
		return nil
	}
	for _, n := range names {
		if err := c.Chmod(n, FileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
