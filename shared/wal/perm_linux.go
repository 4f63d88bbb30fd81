package wal

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
)

// The Linux xattr form of a POSIX ACL (linux/posix_acl_xattr.h): a version
// then (tag, perm, id) entries in tag order.
const (
	aclVersion   = 2
	aclUserObj   = 0x01
	aclGroupObj  = 0x04
	aclOther     = 0x20
	aclUndefined = 0xffffffff
)

func privateFiles(dir string) error {
	acl := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range []struct{ tag, perm uint16 }{{aclUserObj, 7}, {aclGroupObj, 0}, {aclOther, 0}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, aclUndefined)
	}
	for {
		err := syscall.Setxattr(dir, "system.posix_acl_default", acl, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP):
			return ErrNoPrivateFiles
		}
		return &os.PathError{Op: "setxattr", Path: dir, Err: err}
	}
}
