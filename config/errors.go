package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem with a config file.
type Error struct {
	File string // config file name as given to Load or Parse
	Line int    // 1-based line, 0 if unknown
	Col  int    // 1-based column, 0 if unknown (only TOML syntax errors have one)

	// Key is the key path the problem is about, such as
	// "peers[1].public_key". It is empty when no key applies, and for
	// unknown keys, which Msg names instead: unknown key "peers[1].exitt".
	Key string

	Msg string
	Err error // underlying cause, e.g. an I/O error; nil for most problems
}

// Error formats the problem as "file:line:col: key: msg", leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteString(":" + strconv.Itoa(e.Col))
		}
	}
	for _, part := range []string{e.Key, e.Msg} {
		if part == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(part)
	}
	return b.String()
}

// Unwrap returns the underlying cause, so errors.Is(err, fs.ErrNotExist)
// works for a missing file.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in a config file, ordered by line. Load,
// Parse, LoadServer and ParseServer return either nil or a non-empty Errors,
// including when the file cannot be read, so a caller tells a config problem
// from anything else with
//
//	var errs config.Errors
//	if errors.As(err, &errs) { /* bad config: exit 2 */ }
//
// errors.As with a *config.Error target also works and yields the first
// problem.
type Errors []*Error

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// asError returns nil for no problems, so that callers never see a non-nil
// error interface holding an empty Errors. Problems without a line (usually
// a whole missing section) come first, then the rest in file order.
func (es Errors) asError() error {
	if len(es) == 0 {
		return nil
	}
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return es
}

// problems collects Errors for one file, looking up lines as it goes.
type problems struct {
	file  string
	lines map[string]int
	errs  Errors
}

// add records a problem with key, placed on the line where key (or its
// nearest enclosing table or array) is written.
func (p *problems) add(key, format string, args ...any) {
	p.addAt(key, key, format, args...)
}

// addErr is add for a problem with an underlying cause, kept for
// errors.Is.
func (p *problems) addErr(key string, err error, format string, args ...any) {
	p.add(key, format, args...)
	p.errs[len(p.errs)-1].Err = err
}

// addAt is add for problems reported against one key but best pointed at
// through another, such as a bad element of an array that can span lines.
func (p *problems) addAt(lineKey, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{
		File: p.file,
		Line: lineOf(p.lines, lineKey),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// BindError is a listen address of the config that could not be bound when
// the daemon started or reloaded (a port in use, an address not on this
// machine): the config is valid, the machine disagrees.
type BindError struct {
	Key  string // "admin_listen", "socks[0].listen", ...
	Addr string
	Err  error // the cause, without Go's "listen tcp ..." prefix
}

// NewBindError is the BindError for key's address addr and the error
// err of binding it, keeping of err only the bare system error when there
// is one ("address already in use").
func NewBindError(key, addr string, err error) *BindError {
	cause := err
	var oe *net.OpError
	if errors.As(err, &oe) {
		cause = oe.Err
	}
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	return &BindError{Key: key, Addr: addr, Err: cause}
}

func (e *BindError) Error() string { return fmt.Sprintf("%s: listen %s: %v", e.Key, e.Addr, e.Err) }
func (e *BindError) Unwrap() error { return e.Err }

// ErrorAt places err at the line of key in c's file, so that a problem
// found after Load (a listener that cannot be bound) names file and line
// like any other config error.
func (c *Config) ErrorAt(key string, err error) *Error {
	msg := err.Error()
	var be *BindError
	if errors.As(err, &be) && be.Key == key {
		msg = fmt.Sprintf("listen %s: %v", be.Addr, be.Err)
	}
	return &Error{File: c.Path, Line: lineOf(c.lines, key), Key: key, Msg: msg, Err: err}
}

// Where is "file:line" of key in c's file ("file" when the line is not
// known), for messages that point the user at a setting.
func (c *Config) Where(key string) string {
	if line := lineOf(c.lines, key); line > 0 {
		return fmt.Sprintf("%s:%d", c.Path, line)
	}
	return c.Path
}
