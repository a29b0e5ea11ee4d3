//go:build ignore

// gendb turns a snapshot of the Go vulnerability database's OSV entries
// (a `git archive` of golang/vulndb's data/osv, see README.md) into the
// layout govulncheck reads with -db file://DIR, the v1 API that
// vuln.go.dev serves (go.dev/security/vuln/database#api):
//
//	index/db.json       {"modified": T}
//	index/modules.json  [{"path": M, "vulns": [{"id": ID, "modified": T}]}]
//	ID/<ID>.json        the entry itself, unchanged
//
// Usage: go run .ci/vulndb/gendb.go SNAPSHOT.tar.gz OUTDIR
//
// The entries in golang/vulndb carry no dates (vuln.go.dev fills them in
// from the git history when it publishes), so the database's "modified"
// is the snapshot's commit time, which git archive gives every file. The
// index leaves out each vulnerability's "fixed" version: it is optional,
// and govulncheck only uses it to skip reading entries that cannot apply;
// without it, it reads them and decides from their full version ranges.
package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"
)

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type module struct {
	Path  string `json:"path"`
	Vulns []vuln `json:"vulns"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run gendb.go SNAPSHOT.tar.gz OUTDIR")
		os.Exit(2)
	}
	if err := gen(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "gendb:", err)
		os.Exit(1)
	}
}

func gen(snapshot, out string) error {
	f, err := os.Open(snapshot)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return err
	}
	var commit string
	var modified time.Time
	modules := map[string]*module{}
	entries := 0
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			commit = h.PAXRecords["comment"] // git archive's commit id
			continue
		}
		if h.Typeflag != tar.TypeReg || path.Dir(h.Name) != "data/osv" || path.Ext(h.Name) != ".json" {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		var e struct {
			ID       string    `json:"id"`
			Modified time.Time `json:"modified"`
			Affected []struct {
				Package struct {
					Name string `json:"name"`
				} `json:"package"`
			} `json:"affected"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%s: %v", h.Name, err)
		}
		if path.Base(h.Name) != e.ID+".json" {
			return fmt.Errorf("%s holds entry %q", h.Name, e.ID)
		}
		t := e.Modified
		if h.ModTime.After(t) {
			t = h.ModTime
		}
		if t.After(modified) {
			modified = t
		}
		seen := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Package.Name
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			if modules[p] == nil {
				modules[p] = &module{Path: p}
			}
			modules[p].Vulns = append(modules[p].Vulns, vuln{ID: e.ID, Modified: t})
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), b, 0o644); err != nil {
			return err
		}
		entries++
	}
	// A truncated or wrong file must not pass for a database with nothing
	// in it: golang/vulndb had over 4,000 entries in 2026.
	if entries < 1000 || commit == "" {
		return fmt.Errorf("%s: %d entries, commit %q: not a git archive of golang/vulndb's data/osv", snapshot, entries, commit)
	}

	index := make([]*module, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		index = append(index, m)
	}
	sort.Slice(index, func(i, j int) bool { return index[i].Path < index[j].Path })
	if err := writeJSON(filepath.Join(out, "index", "modules.json"), index); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(out, "index", "db.json"), map[string]time.Time{"modified": modified.UTC()}); err != nil {
		return err
	}
	fmt.Printf("golang/vulndb commit %s of %s: %d entries for %d modules\n",
		commit, modified.UTC().Format(time.RFC3339), entries, len(index))
	return nil
}

func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o644)
}
