package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/warren-p2p/warren/config"
)

// TestShippedConfigsLoad keeps config.example.toml and examples/ valid as
// the config format evolves.
func TestShippedConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/*.toml")
	files = append(files, "../config.example.toml")
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := config.Parse(filepath.Join(t.TempDir(), "x.toml"), data); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := config.LoadServer("../examples/rendezvous.toml"); err != nil {
		t.Fatal(err)
	}
}
