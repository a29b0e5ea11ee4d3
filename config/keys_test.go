package config

import (
	"maps"
	"slices"
	"testing"
)

func TestKeyLines(t *testing.T) {
	doc := `# comment = 1
top = "a # not a comment"
"quoted key" = 1
dotted.key = 2
multi = """
fake = 3
[fake]
"""
lit = '''
[[fake]]'''

[tbl] # comment
a = [
  1, # one
  [2, 3],
  { x = 4,
    y = 5 },
]
inline = { p = 1, q = { r = 2 } }

[[arr]]
n = 1

[arr.sub]
m = 1

[[arr]]
n = 2
[[arr.list]]
k = 1
[[arr.list]]
k = 2

[ "sp aced" . x ]
z = 1
`
	want := map[string]int{
		`top`:              2,
		`"quoted key"`:     3,
		`dotted`:           4,
		`dotted.key`:       4,
		`multi`:            5,
		`lit`:              9,
		`tbl`:              12,
		`tbl.a`:            13,
		`tbl.a[0]`:         14,
		`tbl.a[1]`:         15,
		`tbl.a[1][0]`:      15,
		`tbl.a[1][1]`:      15,
		`tbl.a[2]`:         16,
		`tbl.a[2].x`:       16,
		`tbl.a[2].y`:       17,
		`tbl.inline`:       19,
		`tbl.inline.p`:     19,
		`tbl.inline.q`:     19,
		`tbl.inline.q.r`:   19,
		`arr`:              21,
		`arr[0]`:           21,
		`arr[0].n`:         22,
		`arr[0].sub`:       24,
		`arr[0].sub.m`:     25,
		`arr[1]`:           27,
		`arr[1].n`:         28,
		`arr[1].list`:      29,
		`arr[1].list[0]`:   29,
		`arr[1].list[0].k`: 30,
		`arr[1].list[1]`:   31,
		`arr[1].list[1].k`: 32,
		`"sp aced"`:        34,
		`"sp aced".x`:      34,
		`"sp aced".x.z`:    35,
	}
	got := keyLines(doc)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("line of %s = %d, want %d", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %s (line %d)", k, got[k])
		}
	}
}

func TestKeyParentAndLineOf(t *testing.T) {
	parents := map[string]string{
		"a":                  "",
		"a.b":                "a",
		"peers[1].name":      "peers[1]",
		"peers[1]":           "peers",
		`"x.y"[0]`:           `"x.y"`,
		`"x.y".z`:            `"x.y"`,
		`a."b[\"c.d"`:        "a",
		"link.transports[0]": "link.transports",
	}
	for in, want := range parents {
		if got := keyParent(in); got != want {
			t.Errorf("keyParent(%q) = %q, want %q", in, got, want)
		}
	}
	lines := map[string]int{"peers": 3, "peers[1]": 7}
	for key, want := range map[string]int{"peers[1].name": 7, "peers[2].name": 3, "other.x": 0} {
		if got := lineOf(lines, key); got != want {
			t.Errorf("lineOf(%q) = %d, want %d", key, got, want)
		}
	}
}

// A quoted key must be spelled the same by keyLines and by checkShape, or
// unknown keys would lose their lines.
func TestUnknownQuotedKeyHasLine(t *testing.T) {
	doc := validDoc + "\n[\"odd key\"]\nx = 1\n"
	_, err := Parse("w.toml", []byte(doc))
	want := `w.toml:39: unknown key "\"odd key\""`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// keyLines sees only documents the TOML parser accepted, but must not
// panic or hang on anything, since a bug there would hide the real error.
func FuzzKeyLines(f *testing.F) {
	f.Add(validDoc)
	f.Add("a = \"\"\"x\"\"\"\"\"\nb = '''\n'''\n[[c.d]]\ne = [{f = 1}, [2]]")
	f.Add("a = \"\\\"")
	f.Fuzz(func(t *testing.T, doc string) {
		keyLines(doc)
		Parse("f.toml", []byte(doc))
	})
}
