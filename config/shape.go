package config

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// checkShape compares generically decoded TOML with the struct type it is
// about to be decoded into, reporting unknown keys and values of the wrong
// type. The TOML decoder would stop at the first wrong type and cannot tell
// which [[array]] element an unknown key is in; this finds them all, with
// exact indices. It reports whether decoding into t can go ahead: unknown
// keys do not prevent that, wrong types do.
func checkShape(p *problems, data map[string]any, t reflect.Type) bool {
	return checkTable(p, data, t, "")
}

func checkTable(p *problems, data map[string]any, t reflect.Type, path string) bool {
	ok := true
	for _, name := range slices.Sorted(maps.Keys(data)) {
		key := keyJoin(path, name)
		ft, known := fieldType(t, name)
		if !known {
			if guess := closestKey(t, name); guess != "" {
				p.addAt(key, "", "unknown key %q (did you mean %s?)", key, guess)
			} else {
				p.addAt(key, "", "unknown key %q", key)
			}
			continue
		}
		ok = checkValue(p, data[name], ft, key) && ok
	}
	return ok
}

// fieldType finds the field of struct type t whose toml tag is name. Match
// is exact, unlike the TOML decoder's fallback to case-insensitive field
// names, so that "Log_Level" is reported instead of silently accepted.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag != "" && tag != "-" && tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

// closestKey returns the key of struct type t that name is most likely a
// typo of: the same but for case, dashes or underscores, or within two
// edits (one for short names). "" if none is that close.
func closestKey(t reflect.Type, name string) string {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s)) }
	best, bestDist := "", min(2, len(name)/4+1)+1
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		d := editDistance(name, tag)
		if norm(name) == norm(tag) {
			d = 0
		}
		if d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, by bytes:
// config keys are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// checkValue checks one value against Go type t and reports whether it
// will decode.
func checkValue(p *problems, v any, t reflect.Type, key string) bool {
	if t == reflect.TypeFor[Duration]() {
		s, ok := v.(string)
		if !ok {
			return wrongType(p, v, t, key)
		}
		if _, err := time.ParseDuration(s); err != nil {
			p.add(key, "%q is not a duration (want e.g. \"15s\" or \"1m30s\")", s)
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkValue(p, v, t.Elem(), key)
	case reflect.String:
		if _, ok := v.(string); !ok {
			return wrongType(p, v, t, key)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return wrongType(p, v, t, key)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok {
			return wrongType(p, v, t, key)
		}
		return checkRange(p, n, t, key)
	case reflect.Slice:
		elems, ok := asArray(v)
		if !ok {
			return wrongType(p, v, t, key)
		}
		ok = true
		for i, e := range elems {
			ok = checkValue(p, e, t.Elem(), keyIndex(key, i)) && ok
		}
		return ok
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return wrongType(p, v, t, key)
		}
		return checkTable(p, m, t, key)
	}
	return true
}

func checkRange(p *problems, n int64, t reflect.Type, key string) bool {
	z := reflect.New(t).Elem()
	switch {
	case z.CanUint() && n < 0:
		p.add(key, "must not be negative, got %d", n)
		return false
	case z.CanUint() && z.OverflowUint(uint64(n)), z.CanInt() && z.OverflowInt(n):
		p.add(key, "%d is too large", n)
		return false
	}
	return true
}

// asArray accepts both shapes the decoder produces for arrays: []any for
// inline arrays and []map[string]any for [[tables]].
func asArray(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		elems := make([]any, len(a))
		for i, m := range a {
			elems[i] = m
		}
		return elems, true
	}
	return nil, false
}

func wrongType(p *problems, v any, t reflect.Type, key string) bool {
	p.add(key, "want %s, got %s", describeType(t), describeValue(v))
	return false
}

// describeType says in TOML terms what a field of type t takes.
func describeType(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return `a duration string such as "15s"`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "an "), "a ") + "s"
	case reflect.Struct:
		return "a table"
	default:
		return "an integer"
	}
}

func describeValue(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}
