package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/warren-p2p/warren/config"
)

func TestServerToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		set     map[string]bool
		env     string
		want    string
		visible bool
		fails   bool
	}{
		{"config alone", nil, "", "from-config", false, false},
		{"environment over config", nil, "from-env", "from-env", false, false},
		{"-token-file over environment", map[string]bool{"token-file": true}, "from-env", "from-file", false, false},
		{"-token, visible in ps", map[string]bool{"token": true}, "from-env", "from-flag", true, false},
		{"both flags", map[string]bool{"token": true, "token-file": true}, "", "", false, true},
	} {
		t.Setenv(tokenEnv, tc.env)
		cfg := &config.Server{Token: "from-config"}
		visible, err := serverToken(cfg, tc.set, "from-flag", file)
		if (err != nil) != tc.fails {
			t.Errorf("%s: error %v", tc.name, err)
			continue
		}
		if !tc.fails && (cfg.Token != tc.want || visible != tc.visible) {
			t.Errorf("%s: token %q visible %v, want %q %v", tc.name, cfg.Token, visible, tc.want, tc.visible)
		}
	}
}
