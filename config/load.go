package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"

	"github.com/BurntSushi/toml"
)

// Load reads and validates the peer daemon's config file. The error, if
// any, is always an Errors listing every problem found; see Errors. A
// file that holds a secret (rendezvous.token, a socks password) must be
// readable by its owner only, as a key file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(path, data, c.secretKeys(c.Rendezvous.TokenFile != "")); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse is Load for a config already in memory; name stands for the file
// in error messages and relative key_file and token_file paths resolve
// against its directory (the current directory if name has none). It
// reads token_file, but cannot check the privacy of a file it was not
// given.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{Path: name}
	p, md, ok := decode(name, data, c)
	if ok {
		c.finish(p, md)
	}
	c.lines = p.lines
	if err := p.errs.asError(); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadServer reads and validates the rendezvous server's config file. The
// error, if any, is always an Errors listing every problem found. A file
// that holds the token must be readable by its owner only.
func LoadServer(path string) (*Server, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	s, err := ParseServer(path, data)
	if err != nil {
		return nil, err
	}
	var secrets []string
	if s.Token != "" && s.TokenFile == "" {
		secrets = append(secrets, "token")
	}
	if err := checkPrivate(path, data, secrets); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseServer is LoadServer for a config already in memory, with name
// used as in Parse.
func ParseServer(name string, data []byte) (*Server, error) {
	s := &Server{Path: name}
	p, _, ok := decode(name, data, s)
	if ok {
		s.finish(p)
	}
	if err := p.errs.asError(); err != nil {
		return nil, err
	}
	return s, nil
}

// readError makes an unreadable file a config error too, since to the user
// it is one (wrong -c path, wrong permissions), keeping the cause for
// errors.Is.
func readError(path string, err error) error {
	msg := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) { // the path is already in File
		msg = pe.Err.Error()
	}
	return Errors{{File: path, Msg: "cannot read config: " + msg, Err: err}}
}

// decode parses data into v, a pointer to Config or Server. It goes on to
// semantic checks only if ok; unknown keys alone leave ok set, so that they
// are reported together with everything else.
func decode(name string, data []byte, v any) (p *problems, md toml.MetaData, ok bool) {
	p = &problems{file: name}
	// Decoding generically first cannot fail on types, only on syntax.
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		p.errs = append(p.errs, tomlError(name, err))
		return p, md, false
	}
	p.lines = keyLines(string(data))
	if !checkShape(p, raw, reflect.TypeOf(v).Elem()) {
		return p, md, false
	}
	md, err := toml.Decode(string(data), v)
	if err != nil { // checkShape should have caught this; say so anyway
		p.errs = append(p.errs, tomlError(name, err))
		return p, md, false
	}
	return p, md, true
}

// tomlError turns a TOML parse error into file:line:col: message.
func tomlError(name string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: pe.Position.Line, Col: pe.Position.Col, Msg: pe.Message, Err: err}
	}
	return &Error{File: name, Msg: err.Error(), Err: err}
}

// resolvePath makes a path from a config file absolute, taking relative
// ones as relative to the config file's directory rather than to wherever
// warren happens to be started from.
func resolvePath(configFile, path string) string {
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(configFile), path)
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}
