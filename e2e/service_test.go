package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnits checks examples/systemd with systemd's own verifier,
// pointed at the binary under test: a unit with a typo, an unknown
// directive or a command that is not there fails here.
func TestSystemdUnits(t *testing.T) {
	verify := needTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	units, err := filepath.Glob("../examples/systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in examples/systemd: %v", err)
	}
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/warren ") {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/warren", u)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/warren", warrenBin)
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	r := runClient(t, localhost{}, 30*time.Second, nil, verify, append([]string{"verify"}, paths...)...)
	if r.err != nil || strings.TrimSpace(r.stdout+r.stderr) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
}
