package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/warren-p2p/warren/internal/private"
)

// writeFile writes content to dir/name with mode and returns the path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// TestSecretConfigMustBePrivate is issue 15's finding 12 for configs: a
// file holding the join token or a SOCKS5 password that others may read is
// refused, naming the file, the key that holds the secret, its line and
// the chmod to run.
func TestSecretConfigMustBePrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes; private's tests cover Windows ACLs")
	}
	withToken := strings.Replace(validDoc, `token = ""`, `token = "s3cret"`, 1)
	withPassword := strings.Replace(validDoc, "peer = \"home\"\n\n[[forward]]", "peer = \"home\"\nusername = \"u\"\npassword = \"pw\"\n\n[[forward]]", 1)
	for _, tc := range []struct {
		name, doc, key string
		line           int
	}{
		{"token", withToken, "rendezvous.token", 8},
		{"password", withPassword, "socks[0].password", 34},
	} {
		dir := t.TempDir()
		path := writeFile(t, dir, "warren.toml", tc.doc, 0o644)
		_, err := Load(path)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, private.ErrExposed) {
			t.Fatalf("%s in a 0644 config: %v, want a config error that Is private.ErrExposed", tc.name, err)
		}
		if e.File != path || e.Key != tc.key || e.Line != tc.line || !strings.Contains(e.Msg, "chmod 600 "+path) {
			t.Errorf("%s: error %q (key %q, line %d), want file %s, key %s, line %d and the chmod", tc.name, err, e.Key, e.Line, path, tc.key, tc.line)
		}
		os.Chmod(path, 0o600)
		if _, err := Load(path); err != nil {
			t.Errorf("%s in a 0600 config: %v", tc.name, err)
		}
	}
	// Without a secret, a readable config is fine.
	if _, err := Load(writeFile(t, t.TempDir(), "warren.toml", validDoc, 0o644)); err != nil {
		t.Errorf("a 0644 config without secrets: %v", err)
	}
	// The server's too.
	path := writeFile(t, t.TempDir(), "rendezvous.toml", "token = \"s3cret\"\n", 0o640)
	if _, err := LoadServer(path); !errors.Is(err, private.ErrExposed) || !strings.Contains(err.Error(), "token") {
		t.Errorf("server token in a 0640 config: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "token", "  tok-123  \nignored\n", 0o600)
	withFile := strings.Replace(validDoc, `token = ""`, `token_file = "token"`, 1)
	// The config itself may be readable: the secret is elsewhere.
	c, err := Load(writeFile(t, dir, "warren.toml", withFile, 0o644))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rendezvous.Token != "tok-123" || c.Rendezvous.TokenFile != filepath.Join(dir, "token") {
		t.Errorf("token %q from %q", c.Rendezvous.Token, c.Rendezvous.TokenFile)
	}
	s, err := LoadServer(writeFile(t, dir, "rendezvous.toml", "token_file = \"token\"\n", 0o644))
	if err != nil || s.Token != "tok-123" {
		t.Errorf("server token %q, %v", s.Token, err)
	}
	if tok, err := ReadTokenFile("-token-file", filepath.Join(dir, "token")); err != nil || tok != "tok-123" {
		t.Errorf("ReadTokenFile: %q, %v", tok, err)
	}

	for _, tc := range []struct {
		name, doc, want string
	}{
		{"both", strings.Replace(withFile, `token_file`, "token = \"x\"\ntoken_file", 1), "not both"},
		{"missing", strings.Replace(withFile, `"token"`, `"nosuch"`, 1), "no such file"},
		{"empty", strings.Replace(withFile, `"token"`, `"empty"`, 1), "empty"},
		{"readable", strings.Replace(withFile, `"token"`, `"loose"`, 1), "chmod 600"},
	} {
		if tc.name == "readable" && runtime.GOOS == "windows" {
			continue // file modes
		}
		writeFile(t, dir, "empty", "\n", 0o600)
		writeFile(t, dir, "loose", "tok\n", 0o644)
		_, err := Parse(filepath.Join(dir, tc.name+".toml"), []byte(tc.doc))
		var e *Error
		if !errors.As(err, &e) || e.Key != "rendezvous.token_file" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a rendezvous.token_file error saying %q", tc.name, err, tc.want)
		}
	}
}
