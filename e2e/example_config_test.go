package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warren-p2p/warren/config"
)

// TestShippedConfigsLoad keeps config.example.toml and examples/ valid as
// the config format evolves.
func TestShippedConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/*.toml")
	files = append(files, "../config.example.toml")
	// The two ends of an example can run on one machine: their admin
	// listeners differ.
	admins := map[string]string{} // "dir admin" -> file
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(filepath.Base(f), "rendezvous") {
				// A server's config (examples/cluster's nodes), with its
				// secret file beside it as a deployment has it.
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "cluster.secret"), []byte("s3cret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := config.ParseServer(filepath.Join(dir, "x.toml"), data); err != nil {
					t.Fatal(err)
				}
				return
			}
			c, err := config.Parse(filepath.Join(t.TempDir(), "x.toml"), data)
			if err != nil {
				t.Fatal(err)
			}
			key := filepath.Dir(f) + " " + c.AdminListen
			if other, ok := admins[key]; ok {
				t.Errorf("%s and %s both listen on admin %s: they cannot run side by side", other, f, c.AdminListen)
			}
			admins[key] = f
		})
	}
	if _, err := config.LoadServer("../examples/rendezvous.toml"); err != nil {
		t.Fatal(err)
	}
}
