package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
)

// TestMissingKeyIsNoNewIdentity: a key_file that does not exist (a typo,
// a wrong directory) stops the daemon with the path and the command to
// run, and creates nothing, unless create_key = true.
func TestMissingKeyIsNoNewIdentity(t *testing.T) {
	server, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, create := range []bool{false, true} {
		dir := t.TempDir()
		body := "key_file = \"warren.kye\"\ncreate_key = " + map[bool]string{false: "false", true: "true"}[create] +
			"\n[rendezvous]\naddress = \"127.0.0.1:1\"\npublic_key = \"" + server.Public().String() + "\"\n"
		cfg, err := config.Parse(filepath.Join(dir, "warren.toml"), []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		log.SetOutput(&strings.Builder{})
		_, err = New(cfg, log)
		_, statErr := os.Stat(cfg.KeyFile)
		switch {
		case !create && (!errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "warren keygen -o "+cfg.KeyFile)):
			t.Errorf("missing key without create_key: %v, want ErrNoKey naming the path and warren keygen", err)
		case !create && !os.IsNotExist(statErr):
			t.Errorf("missing key without create_key: a key file was created (%v)", statErr)
		case create && (err != nil || statErr != nil):
			t.Errorf("create_key = true: %v, key file: %v", err, statErr)
		}
	}
}
