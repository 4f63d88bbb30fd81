package repair

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// BackupDir is the directory (under the log directory) that receives, one
// subdirectory per run named after its UTC start time, a byte-for-byte
// copy of every file repair or compact is about to change, truncate,
// rewrite, rename or remove.
const BackupDir = "backup"

// Options are the switches shared by Repair and Compact.
type Options struct {
	// DryRun plans without writing anything (no backup either).
	DryRun bool
	// NoBackup skips the copies into DIR/backup/<time>/.
	NoBackup bool
}

// backup copies originals into DIR/backup/<time>/ before they change. The
// run directory is created on the first copy; an existing one is never
// reused.
type backup struct {
	logDir string
	start  time.Time
	off    bool
	dir    string          // the run directory, once created
	saved  map[string]bool // base names already copied
	rep    *Report
}

func newBackup(logDir string, o Options, rep *Report) *backup {
	return &backup{logDir: logDir, start: time.Now().UTC(), off: o.NoBackup || o.DryRun, saved: map[string]bool{}, rep: rep}
}

// save copies path (a file of the log directory) into the run's backup
// directory, unless backups are off or it was already copied in this run.
func (b *backup) save(path string) error {
	if b.off {
		return nil
	}
	name := filepath.Base(path)
	if b.saved[name] {
		return nil // the first copy is the original
	}
	if b.dir == "" {
		if err := b.create(); err != nil {
			return err
		}
	}
	if err := copyDurable(filepath.Join(b.dir, name), path); err != nil {
		return fmt.Errorf("backup of %s: %w", path, err)
	}
	b.saved[name] = true
	b.rep.BackedUp = append(b.rep.BackedUp, name)
	return nil
}

func (b *backup) create() error {
	root := filepath.Join(b.logDir, BackupDir)
	if err := wal.MkdirPrivate(root); err != nil {
		return err
	}
	stamp := b.start.Format("20060102T150405Z")
	for i := 0; ; i++ {
		dir := filepath.Join(root, stamp)
		if i > 0 {
			dir = fmt.Sprintf("%s-%d", dir, i)
		}
		err := os.Mkdir(dir, wal.DirMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err == nil {
			err = os.Chmod(dir, wal.DirMode) // whatever the umask
		}
		if err != nil {
			return err
		}
		b.dir = dir
		b.rep.Backup = dir
		break
	}
	if err := (wal.OSFS{}).SyncDir(root); err != nil {
		return err
	}
	return wal.OSFS{}.SyncDir(b.logDir)
}

// copyDurable copies src into dst (which must not exist), fsyncs it and
// its directory.
func copyDurable(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := wal.OpenPrivate(dst, os.O_WRONLY|os.O_EXCL)
	if err != nil {
		return err
	}
	if _, err = io.Copy(out, in); err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return wal.OSFS{}.SyncDir(filepath.Dir(dst))
}
