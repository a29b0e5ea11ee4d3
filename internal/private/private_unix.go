//go:build !windows

package private

import (
	"fmt"
	"os"
)

// Check returns nil if path's mode gives group and others no access, and
// else an error wrapping ErrExposed that names the mode and the chmod to
// run.
func Check(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return &exposedErr{fmt.Sprintf("mode %04o lets group or others read it (run: chmod 600 %s)", perm, path)}
	}
	return nil
}

// Restrict makes path private: mode 0600 (files warren creates already
// are; this undoes a umask or a copy).
func Restrict(path string) error { return os.Chmod(path, 0o600) }
