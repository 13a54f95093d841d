package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ncruces/go-sqlite3"
	"golang.org/x/sys/unix"
)

// lowSpace is how little room counts as a full file system.
const lowSpace = 1 << 20

// explainFull names the likely cause of failed writes: SQLite reports a
// write that hit a full disk as a generic "disk I/O error", which tells the
// user nothing. The file system is only looked at when a write failed.
func (s *Store) explainFull(batch []*op) {
	checked, full := false, false
	for _, o := range batch {
		if o.err == nil || !isIOError(o.err) {
			continue
		}
		if !checked {
			full, checked = fileSystemFull(filepath.Dir(s.path)), true
		}
		if full {
			o.err = fmt.Errorf("%w: the file system holding %s is full", o.err, s.path)
		}
	}
}

func isIOError(err error) bool {
	return errors.Is(err, sqlite3.IOERR) || errors.Is(err, sqlite3.FULL)
}

func fileSystemFull(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return uint64(st.Bavail)*uint64(st.Bsize) < lowSpace
}
