package wal

import (
	"os"
	"path/filepath"
	"strings"
)

// DataSubdir is the directory, inside the server's data directory, that
// holds the segment log (the rest of DATA is the definitions store).
const DataSubdir = "messages"

// LogDir maps a tool's --dir to the segment log directory: dir itself, or
// dir/messages when dir is the server's data directory (dir/messages holds
// a VERSION file or .wal segments). It reports whether it chose
// dir/messages.
func LogDir(dir string) (string, bool) {
	sub := filepath.Join(dir, DataSubdir)
	if st, err := os.Stat(filepath.Join(sub, VersionFile)); err == nil && st.Mode().IsRegular() {
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
