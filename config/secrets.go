package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/warren-p2p/warren/internal/private"
)

// Secrets: a join token and SOCKS5 passwords may be written into the
// config itself, or the token kept in a file of its own (token_file).
// Either way the file that holds a secret must be as private as a key file
// (package private): readable by its owner only.

// maxTokenFile bounds what is read from a token file: a token is a line.
const maxTokenFile = 4096

// readTokenFile reads the token from the file at path, named by key in
// the config, into *token: its first line, without surrounding white
// space. The file must be private and the token non-empty; token and
// token_file exclude each other (tokenKey names the first).
func readTokenFile(p *problems, tokenKey, key, path string, token *string) {
	if *token != "" {
		p.add(key, "set either %s or %s, not both", tokenKey, key)
		return
	}
	if err := private.Check(path); err != nil {
		if errors.Is(err, private.ErrExposed) {
			p.add(key, "token file %s: %v", path, err)
		} else {
			p.addErr(key, err, "token file %s: %v", path, err)
		}
		return
	}
	b, err := readSmallFile(path, maxTokenFile+1)
	if err != nil {
		p.addErr(key, err, "token file: %v", err)
		return
	}
	if len(b) > maxTokenFile {
		p.add(key, "token file %s: over %d bytes; it should hold the token alone", path, maxTokenFile)
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if *token = strings.TrimSpace(line); *token == "" {
		p.add(key, "token file %s: empty", path)
	}
}

// readSmallFile reads at most max bytes of the regular file at path: a
// device or a pipe named by mistake must not hang or flood the reader.
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// secretKeys names the keys of c that hold a secret in the file itself.
func (c *Config) secretKeys(fromFile bool) []string {
	var keys []string
	if c.Rendezvous.Token != "" && !fromFile {
		keys = append(keys, "rendezvous.token")
	}
	for i, s := range c.Socks {
		if s.Password != "" {
			keys = append(keys, keyIndex("socks", i)+".password")
		}
	}
	return keys
}

// checkPrivate reports the config file at path when it holds a secret
// (keys) and others may read it, against the first such key.
func checkPrivate(path string, data []byte, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	err := private.Check(path)
	if err == nil {
		return nil
	}
	p := &problems{file: path, lines: keyLines(string(data))}
	msg := fmt.Sprintf("holds a secret, but the file is not private: %v", err)
	if len(keys) > 1 {
		msg = fmt.Sprintf("holds a secret (as do %s), but the file is not private: %v", strings.Join(keys[1:], ", "), err)
	}
	p.addErr(keys[0], err, "%s", msg)
	return p.errs.asError()
}

// ReadTokenFile reads a join token from the file at path (named on the
// command line by flag, such as "-token-file") as a config's token_file is
// read: the first line, trimmed, from a file readable by its owner only.
// The error, if any, is an Errors.
func ReadTokenFile(flag, path string) (string, error) {
	p := &problems{file: path}
	var token string
	readTokenFile(p, "", flag, path, &token)
	return token, p.errs.asError()
}
