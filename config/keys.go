package config

import (
	"strconv"
	"strings"
)

// Key paths name a place in a config the way users think of it:
// "peers[1].public_key", "link.transports". Array indices count from 0, in
// file order. Components that are not bare TOML keys are quoted as TOML
// would quote them, so a path can be pasted back into the file.

// keyJoin appends a key to a path.
func keyJoin(parent, name string) string {
	if !isBareKey(name) {
		name = strconv.Quote(name)
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// keyIndex appends an array index to a path.
func keyIndex(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// keyParent strips the last component (".name" or "[i]") of a path; it
// returns "" for a top-level key.
func keyParent(key string) string {
	cut := 0 // start of the last component
	inQuote := false
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			cut = i
		}
	}
	return key[:cut]
}

// lineOf returns the line key is written on, or else the line of its
// nearest enclosing table or array, or 0 if none of them was written
// (such as a required key in a missing section).
func lineOf(lines map[string]int, key string) int {
	for ; key != ""; key = keyParent(key) {
		if line, ok := lines[key]; ok {
			return line
		}
	}
	return 0
}

// keyLines maps the path of every key, table header and array element in a
// TOML document to the line it starts on. It only runs on documents the
// TOML parser has accepted, so it skips over values without validating
// them; on anything it does not understand it moves on rather than fail,
// since a missing line only makes an error message less precise.
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, line: 1, lines: map[string]int{}, arrays: map[string]int{}}
	s.document()
	return s.lines
}

type lineScanner struct {
	src    string
	pos    int
	line   int
	lines  map[string]int
	arrays map[string]int // [[x]] headers seen so far, by path of x
}

func (s *lineScanner) peek() byte {
	if s.pos >= len(s.src) {
		return 0
	}
	return s.src[s.pos]
}

// advanceTo moves to offset i, counting the newlines passed.
func (s *lineScanner) advanceTo(i int) {
	i = min(i, len(s.src))
	s.line += strings.Count(s.src[s.pos:i], "\n")
	s.pos = i
}

// mark records where path starts unless an earlier line already defined it
// (a table implicitly created by a dotted key or header keeps its first line).
func (s *lineScanner) mark(path string, line int) {
	if _, ok := s.lines[path]; !ok {
		s.lines[path] = line
	}
}

// skipSpace skips blanks and, if newlines is set, line breaks and comments.
func (s *lineScanner) skipSpace(newlines bool) {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			if !newlines {
				return
			}
			s.advanceTo(s.pos + 1)
		case '#':
			if !newlines {
				return
			}
			end := strings.IndexByte(s.src[s.pos:], '\n')
			if end < 0 {
				end = len(s.src) - s.pos
			}
			s.pos += end
		default:
			return
		}
	}
}

func (s *lineScanner) document() {
	table := ""
	for {
		s.skipSpace(true)
		start := s.pos
		switch s.peek() {
		case 0:
			return
		case '[':
			table = s.header()
		default:
			s.keyValue(table)
		}
		if s.pos == start { // not TOML as we know it: skip a byte
			s.pos++
		}
	}
}

// header reads a [table] or [[array]] header and returns the path that
// following keys belong to, such as "peers[2]".
func (s *lineScanner) header() string {
	line := s.line
	double := strings.HasPrefix(s.src[s.pos:], "[[")
	if double {
		s.pos += 2
	} else {
		s.pos++
	}
	names := s.key()
	s.skipSpace(false)
	for s.peek() == ']' {
		s.pos++
	}
	path := ""
	for i, name := range names {
		path = keyJoin(path, name)
		if double && i == len(names)-1 {
			s.mark(path, line)
			s.arrays[path]++
		}
		// Headers below an array of tables refer to its latest element.
		if n := s.arrays[path]; n > 0 {
			path = keyIndex(path, n-1)
		}
		s.mark(path, line)
	}
	return path
}

// keyValue reads "key = value" in table.
func (s *lineScanner) keyValue(table string) {
	line := s.line
	path := table
	for _, name := range s.key() {
		path = keyJoin(path, name)
		s.mark(path, line)
	}
	s.skipSpace(false)
	if s.peek() == '=' {
		s.pos++
	}
	s.skipSpace(false)
	s.value(path)
}

// key reads a possibly dotted, possibly quoted key.
func (s *lineScanner) key() []string {
	var names []string
	for {
		s.skipSpace(false)
		switch s.peek() {
		case '"', '\'':
			names = append(names, s.str())
		default:
			start := s.pos
			for s.pos < len(s.src) && isBareKey(s.src[s.pos:s.pos+1]) {
				s.pos++
			}
			names = append(names, s.src[start:s.pos])
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return names
		}
		s.pos++
	}
}

// value skips one value, recording the lines of array elements and inline
// table keys below path.
func (s *lineScanner) value(path string) {
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.array(path)
	case '{':
		s.inlineTable(path)
	default: // number, boolean, date: runs to a delimiter
		end := strings.IndexAny(s.src[s.pos:], ",]}#\r\n")
		if end < 0 {
			end = len(s.src) - s.pos
		}
		s.pos += end
	}
}

func (s *lineScanner) array(path string) {
	s.pos++ // [
	for i := 0; ; {
		s.skipSpace(true)
		switch s.peek() {
		case 0:
			return
		case ']':
			s.pos++
			return
		case ',':
			s.pos++
		default:
			start := s.pos
			elem := keyIndex(path, i)
			s.mark(elem, s.line)
			s.value(elem)
			i++
			if s.pos == start {
				s.pos++
			}
		}
	}
}

func (s *lineScanner) inlineTable(path string) {
	s.pos++ // {
	for {
		s.skipSpace(true)
		switch s.peek() {
		case 0:
			return
		case '}':
			s.pos++
			return
		case ',':
			s.pos++
		default:
			start := s.pos
			s.keyValue(path)
			if s.pos == start {
				s.pos++
			}
		}
	}
}

// str reads any of TOML's four string forms and returns its content, with
// escapes decoded as far as strconv understands them (it only matters for
// quoted keys, where an approximate name merely costs a line number).
func (s *lineScanner) str() string {
	q := s.src[s.pos]
	delim := string(q)
	if strings.HasPrefix(s.src[s.pos:], strings.Repeat(delim, 3)) {
		delim = strings.Repeat(delim, 3)
	}
	start := s.pos + len(delim)
	i := start
	for i < len(s.src) {
		if q == '"' && s.src[i] == '\\' {
			i += 2
			continue
		}
		if strings.HasPrefix(s.src[i:], delim) {
			break
		}
		i++
	}
	if len(delim) == 3 { // up to two quotes may end the content: """a""""
		for n := 0; n < 2 && i < len(s.src) && strings.HasPrefix(s.src[i+1:], delim); n++ {
			i++
		}
	}
	content := s.src[start:min(i, len(s.src))]
	s.advanceTo(i + len(delim))
	if q == '"' && len(delim) == 1 {
		if u, err := strconv.Unquote(`"` + content + `"`); err == nil {
			return u
		}
	}
	return content
}
