package daemon

import (
	"bytes"
	"math"
	"net/netip"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/warren-p2p/warren/punch"
)

// TestExpositionText checks the writer's output byte for byte: families
// sorted by name, HELP (escaped) and TYPE before samples, samples sorted
// by label values, label values escaped, histograms cumulative with +Inf,
// _sum and _count, integers in full, and empty families left out.
func TestExpositionText(t *testing.T) {
	var e exposition
	g := e.family("zz_gauge", gauge, "A gauge.\nSecond line with a \\ backslash.", "peer")
	g.set(0.5, `b"quote`)
	g.set(2, `a\back`)
	g.set(-1, "c\nline")
	c := e.family("aa_events_total", counter, "Events.", "kind", "result")
	c.set(3, "y", "ok")
	c.add(4, "x", "failed")
	c.add(1, "x", "failed")
	c.set(123456789012, "x", "ok")
	e.family("mm_empty_total", counter, "Nothing counted, so not written.", "kind")
	e.family("mm_plain", gauge, "No labels.").set(7)
	bounds := []float64{0.1, 1, 2.5}
	h := e.histogram("hh_seconds", "Durations.", bounds, "result")
	hist := newHistogram(len(bounds))
	for _, v := range []float64{0.05, 0.1, 0.7, 3, 30} {
		hist.observe(bounds, v)
	}
	h.observed(hist, "ok")
	h.observed(newHistogram(len(bounds)), "failed")

	var buf bytes.Buffer
	if err := e.write(&buf); err != nil {
		t.Fatal(err)
	}
	want := `# HELP aa_events_total Events.
# TYPE aa_events_total counter
aa_events_total{kind="x",result="failed"} 5
aa_events_total{kind="x",result="ok"} 123456789012
aa_events_total{kind="y",result="ok"} 3
# HELP hh_seconds Durations.
# TYPE hh_seconds histogram
hh_seconds_bucket{result="failed",le="0.1"} 0
hh_seconds_bucket{result="failed",le="1"} 0
hh_seconds_bucket{result="failed",le="2.5"} 0
hh_seconds_bucket{result="failed",le="+Inf"} 0
hh_seconds_sum{result="failed"} 0
hh_seconds_count{result="failed"} 0
hh_seconds_bucket{result="ok",le="0.1"} 2
hh_seconds_bucket{result="ok",le="1"} 3
hh_seconds_bucket{result="ok",le="2.5"} 3
hh_seconds_bucket{result="ok",le="+Inf"} 5
hh_seconds_sum{result="ok"} 33.85
hh_seconds_count{result="ok"} 5
# HELP mm_plain No labels.
# TYPE mm_plain gauge
mm_plain 7
# HELP zz_gauge A gauge.\nSecond line with a \\ backslash.
# TYPE zz_gauge gauge
zz_gauge{peer="a\\back"} 2
zz_gauge{peer="b\"quote"} 0.5
zz_gauge{peer="c\nline"} -1
`
	if got := buf.String(); got != want {
		t.Fatalf("exposition:\n%s\nwant:\n%s", got, want)
	}

	// A strict parser reads the escaped values back as they were.
	fams := parseStrict(t, buf.String())
	if len(fams) != 4 {
		t.Errorf("parsed %d families, want 4", len(fams))
	}
	var peers []string
	for _, m := range fams["zz_gauge"].GetMetric() {
		peers = append(peers, m.GetLabel()[0].GetValue())
	}
	if got := strings.Join(peers, "|"); got != "a\\back|b\"quote|c\nline" {
		t.Errorf("label values read back as %q", got)
	}
	if got := fams["zz_gauge"].GetHelp(); got != "A gauge.\nSecond line with a \\ backslash." {
		t.Errorf("help read back as %q", got)
	}
}

// TestExpositionMisuse checks that a misused writer writes nothing and
// says why.
func TestExpositionMisuse(t *testing.T) {
	for name, build := range map[string]func(e *exposition){
		"bad metric name":       func(e *exposition) { e.family("warren-x", gauge, "h").set(1) },
		"bad label name":        func(e *exposition) { e.family("x", gauge, "h", "__reserved").set(1, "v") },
		"le on a histogram":     func(e *exposition) { e.histogram("x", "h", []float64{1}, "le") },
		"counter without total": func(e *exposition) { e.family("x_count", counter, "h").set(1) },
		"family twice":          func(e *exposition) { e.family("x", gauge, "h"); e.family("x", gauge, "h") },
		"label count":           func(e *exposition) { e.family("x", gauge, "h", "a", "b").set(1, "only one") },
		"buckets not ascending": func(e *exposition) { e.histogram("x", "h", []float64{1, 0.5}) },
		"set on a histogram":    func(e *exposition) { e.histogram("x", "h", []float64{1}).set(1) },
		"histogram shape":       func(e *exposition) { e.histogram("x", "h", []float64{1}).observed(newHistogram(3)) },
	} {
		var e exposition
		build(&e)
		var buf bytes.Buffer
		if err := e.write(&buf); err == nil || buf.Len() > 0 {
			t.Errorf("%s: wrote %q, error %v; want an error and nothing written", name, buf.String(), err)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 1: "1", -3: "-3", 1 << 40: "1099511627776", 0.25: "0.25", 1e-9: "1e-09", 1e300: "1e+300",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestHistogramBucketsAreInclusive(t *testing.T) {
	bounds := setupBuckets()
	h := newHistogram(len(bounds))
	for _, b := range bounds {
		h.observe(bounds, b) // exactly on each bound: that bucket ("le")
	}
	h.observe(bounds, 11)
	for i, n := range h.counts {
		if n != 1 {
			t.Errorf("bucket %d holds %d, want 1", i, n)
		}
	}
}

func TestNATLabel(t *testing.T) {
	pub := punch.NAT{}
	if got := natLabel(pub); got != "unknown" {
		t.Errorf("zero NAT: %q", got)
	}
	n := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationSequential, Delta: 2}
	n.PublicIP = netip.MustParseAddr("192.0.2.1")
	if got := natLabel(n); got != "symseq" {
		t.Errorf("sequential NAT (%s): %q, want symseq", n, got)
	}
	n.Mapping, n.Allocation = punch.MappingEndpointIndependent, punch.AllocationRandom
	if got := natLabel(n); got != n.String() {
		t.Errorf("cone NAT: %q, want %q", got, n.String())
	}
}

// parseStrict parses a scrape with prometheus/common's text parser and
// legacy (strict) name rules, and checks what that parser lets through:
// each family in one block, HELP then TYPE before its samples, no series
// twice, and histograms cumulative with +Inf equal to _count.
func parseStrict(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("exposition does not end in a newline")
	}
	seenFamily := map[string]bool{}
	seenSeries := map[string]bool{}
	var current, typ string
	var helpFor string
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if seenFamily[name] {
				t.Errorf("line %d: family %s appears twice", i+1, name)
			}
			seenFamily[name] = true
			current, typ, helpFor = name, "", name
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) != 2 || f[0] != helpFor || typ != "" {
				t.Errorf("line %d: %q does not follow its HELP line", i+1, line)
				continue
			}
			typ = f[1]
		case strings.HasPrefix(line, "#") || line == "":
			t.Errorf("line %d: unexpected %q", i+1, line)
		default:
			series, _, _ := strings.Cut(line, " ")
			if i := strings.LastIndex(line, "} "); i >= 0 {
				series = line[:i+1]
			}
			name, _, _ := strings.Cut(series, "{")
			base := name
			if typ == "histogram" {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
			}
			if base != current || typ == "" {
				t.Errorf("line %d: sample %s outside its family's block (in %s)", i+1, name, current)
			}
			if seenSeries[series] {
				t.Errorf("line %d: series %s twice", i+1, series)
			}
			seenSeries[series] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			var last uint64
			bounds := []float64{math.Inf(-1)}
			for _, b := range h.GetBucket() {
				if b.GetCumulativeCount() < last || b.GetUpperBound() <= bounds[len(bounds)-1] {
					t.Errorf("%s: buckets not cumulative and ascending: %v", name, h)
				}
				last = b.GetCumulativeCount()
				bounds = append(bounds, b.GetUpperBound())
			}
			if !math.IsInf(bounds[len(bounds)-1], 1) || last != h.GetSampleCount() {
				t.Errorf("%s: the last bucket is not +Inf holding _count: %v", name, h)
			}
		}
	}
	return fams
}
