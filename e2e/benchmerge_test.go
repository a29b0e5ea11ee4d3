package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// oldReport is a report as a whole run wrote it, with a "## " line in a
// code block that is no heading.
const oldReport = "# Benchmarks\n\nMeasured 2026-11-22 at commit c21b242 on Linux (2 cores, shared).\n\n" +
	"Regenerate (as root): the old way.\n\n## A\n\nold a\n\n| x |\n|---|\n\n## B\n\n```\n## not a heading\n```\nold b\n\n" +
	missNotes

// TestMergeReport: a run that measured some sections replaces those, in
// place, each stamped with when it was measured; adds the new ones before
// the closing notes; and keeps every other section and the header's
// date as they were, with today's Regenerate paragraph.
func TestMergeReport(t *testing.T) {
	got := mergeReport(oldReport, []string{"## B\n\nnew b\n", "## C\n\nnew c\n"}, "Measured 2026-12-07 at commit 1234567.")
	want := "# Benchmarks\n\nMeasured 2026-11-22 at commit c21b242 on Linux (2 cores, shared).\n\n" + benchRegenerate +
		"\n\n## A\n\nold a\n\n| x |\n|---|\n\n## B\n\nMeasured 2026-12-07 at commit 1234567.\n\nnew b\n\n" +
		"## C\n\nMeasured 2026-12-07 at commit 1234567.\n\nnew c\n\n" + missNotes
	if got != want {
		t.Fatalf("merged report:\n%s\nwant:\n%s", got, want)
	}
	// Refreshed again: the section's old stamp goes with it.
	again := mergeReport(got, []string{"## C\n\nnewer c\n"}, "Measured 2026-12-08 at commit 89abcde.")
	if want := strings.Replace(want, "Measured 2026-12-07 at commit 1234567.\n\nnew c",
		"Measured 2026-12-08 at commit 89abcde.\n\nnewer c", 1); again != want {
		t.Fatalf("refreshed again:\n%s\nwant:\n%s", again, want)
	}
}

// TestMergeReportKeepsWhole: merging no section into a whole run's report
// gives it back byte for byte: nothing a merge does not mean to change
// moves.
func TestMergeReportKeepsWhole(t *testing.T) {
	whole := wholeReport([]string{"## A\n\na\n", "## B\n\n```\n## no\n```\n"}, "2026-12-07", "1234567")
	if got := mergeReport(whole, nil, "Measured today."); got != whole {
		t.Fatalf("merged:\n%s\nwant:\n%s", got, whole)
	}
}

// TestBenchReportWrite: a run of one benchmark refreshes its section in
// the existing report; a whole run writes the whole report, whatever was
// there.
func TestBenchReportWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte(oldReport), 0o644); err != nil {
		t.Fatal(err)
	}
	one := benchReport{sections: map[int]string{benchCluster: "## B\n\nnew b\n"}}
	if err := one.write(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Measured 2026-11-22 at commit c21b242", "## A\n\nold a\n", "new b\n", benchRegenerate} {
		if !strings.Contains(string(got), s) {
			t.Errorf("after a run of one benchmark the report lacks %q:\n%s", s, got)
		}
	}
	if strings.Contains(string(got), "old b") {
		t.Errorf("the measured section was not replaced:\n%s", got)
	}

	all := benchReport{sections: map[int]string{}}
	for _, order := range benchSections {
		all.sections[order] = "## S" + string(rune('a'+order%26)) + "\n\nfresh\n"
	}
	if err := all.write(path); err != nil {
		t.Fatal(err)
	}
	if got, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "old a\n") || strings.Contains(string(got), "commit c21b242") {
		t.Errorf("a whole run kept the old report's sections:\n%s", got)
	}
}
