package repair

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// DataSubdir is the directory, inside the server's data directory, that
// holds the segment log (the rest is DATA/definitions, Badger).
const DataSubdir = "messages"

// LogDir maps --dir to the segment log directory: dir itself, or
// dir/messages when dir is the server's data directory (dir/messages holds
// a VERSION file or .wal segments). It reports whether it chose
// dir/messages.
func LogDir(dir string) (string, bool) {
	sub := filepath.Join(dir, DataSubdir)
	if st, err := os.Stat(filepath.Join(sub, wal.VersionFile)); err == nil && st.Mode().IsRegular() {
		return sub, true
	}
	ents, err := os.ReadDir(sub)
	if err != nil {
		return dir, false
	}
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".wal") {
			return sub, true
		}
	}
	return dir, false
}
