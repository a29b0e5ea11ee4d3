package daemon

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): each
// family is a "# HELP" line, a "# TYPE" line and its samples; families
// and samples are sorted here so that a scrape reads the same every time.

type metricType string

const (
	counter  metricType = "counter"
	gauge    metricType = "gauge"
	histType metricType = "histogram"
)

// bucketLbl is the label of a histogram's bucket bound.
const bucketLbl = "le"

// exposition collects metric families for one scrape.
type exposition struct {
	families []*family
	err      error // the first misuse: a bad name, a repeated family, a wrong label count
}

// family is one metric family and its samples.
type family struct {
	e       *exposition
	name    string
	help    string
	typ     metricType
	labels  []string
	buckets []float64          // histograms
	samples map[string]*sample // by label values
}

type sample struct {
	values []string
	value  float64
	hist   *histogram
}

// family adds a counter or gauge family with the given label names.
func (e *exposition) family(name string, typ metricType, help string, labels ...string) *family {
	f := &family{e: e, name: name, help: help, typ: typ, labels: labels, samples: map[string]*sample{}}
	switch {
	case !validMetricName(name):
		e.fail(fmt.Errorf("metric name %q is not valid", name))
	case slices.ContainsFunc(e.families, func(g *family) bool { return g.name == name }):
		e.fail(fmt.Errorf("metric %s added twice", name))
	case typ == counter && !strings.HasSuffix(name, "_total"):
		e.fail(fmt.Errorf("counter %s does not end in _total", name))
	}
	for i, l := range labels {
		if !validLabelName(l) || slices.Contains(labels[:i], l) || (typ == histType && l == bucketLbl) {
			e.fail(fmt.Errorf("metric %s: label name %q is not valid", name, l))
		}
	}
	e.families = append(e.families, f)
	return f
}

// histogram adds a histogram family whose buckets have the upper bounds
// buckets (ascending, +Inf implied).
func (e *exposition) histogram(name, help string, buckets []float64, labels ...string) *family {
	f := e.family(name, histType, help, labels...)
	f.buckets = buckets
	if !slices.IsSorted(buckets) || slices.ContainsFunc(buckets, func(b float64) bool { return math.IsNaN(b) || math.IsInf(b, 0) }) {
		e.fail(fmt.Errorf("histogram %s: buckets %v not ascending and finite", name, buckets))
	}
	return f
}

func (e *exposition) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// lookup returns the sample with these label values, creating it.
func (f *family) lookup(values []string) *sample {
	if len(values) != len(f.labels) {
		f.e.fail(fmt.Errorf("metric %s: %d label values for labels %v", f.name, len(values), f.labels))
		return &sample{}
	}
	key := strings.Join(values, "\xff")
	s := f.samples[key]
	if s == nil {
		s = &sample{values: slices.Clone(values)}
		f.samples[key] = s
	}
	return s
}

// set sets a counter's or gauge's sample.
func (f *family) set(v float64, values ...string) {
	if f.typ == histType {
		f.e.fail(fmt.Errorf("metric %s: set on a histogram", f.name))
		return
	}
	f.lookup(values).value = v
}

// add adds v to a counter's or gauge's sample.
func (f *family) add(v float64, values ...string) {
	if f.typ == histType {
		f.e.fail(fmt.Errorf("metric %s: add on a histogram", f.name))
		return
	}
	f.lookup(values).value += v
}

// observed sets a histogram's sample; h must have a count per bucket of
// the family and one for +Inf.
func (f *family) observed(h *histogram, values ...string) {
	if f.typ != histType || len(h.counts) != len(f.buckets)+1 {
		f.e.fail(fmt.Errorf("metric %s: not a histogram with %d buckets", f.name, len(f.buckets)))
		return
	}
	f.lookup(values).hist = h
}

// write writes the families in order of name, each one's samples in
// order of label values; families without samples are left out.
func (e *exposition) write(w io.Writer) error {
	if e.err != nil {
		return e.err
	}
	bw := bufio.NewWriter(w)
	fams := slices.Clone(e.families)
	slices.SortFunc(fams, func(a, b *family) int { return cmp.Compare(a.name, b.name) })
	for _, f := range fams {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		samples := make([]*sample, 0, len(f.samples))
		for _, s := range f.samples {
			samples = append(samples, s)
		}
		slices.SortFunc(samples, func(a, b *sample) int { return slices.Compare(a.values, b.values) })
		for _, s := range samples {
			if f.typ != histType {
				f.writeLine(bw, "", s.values, "", s.value)
				continue
			}
			h := s.hist
			if h == nil {
				h = newHistogram(len(f.buckets))
			}
			var cum uint64
			for i, b := range f.buckets {
				cum += h.counts[i]
				f.writeLine(bw, "_bucket", s.values, formatValue(b), float64(cum))
			}
			f.writeLine(bw, "_bucket", s.values, "+Inf", float64(h.count))
			f.writeLine(bw, "_sum", s.values, "", h.sum)
			f.writeLine(bw, "_count", s.values, "", float64(h.count))
		}
	}
	return bw.Flush()
}

// writeLine writes one line of f: name+suffix{label="value",...} value,
// with an le label last when le is set.
func (f *family) writeLine(w *bufio.Writer, suffix string, values []string, le string, v float64) {
	w.WriteString(f.name + suffix)
	if len(f.labels) > 0 || le != "" {
		w.WriteByte('{')
		for i, l := range f.labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			w.WriteString(escapeLabelValue(values[i]))
			w.WriteByte('"')
		}
		if le != "" {
			if len(f.labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(bucketLbl + `="` + le + `"`)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatValue(v))
	w.WriteByte('\n')
}

// escapeLabelValue escapes a label value: backslash, double quote and
// line feed.
func escapeLabelValue(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// formatValue writes integers (counters, byte counts) in full and other
// values in the shortest form that reads back the same.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool { return validName(s, true) }

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and is
// not reserved (a leading "__").
func validLabelName(s string) bool { return validName(s, false) && !strings.HasPrefix(s, "__") }

func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9') || (colon && c == ':')
		if !ok {
			return false
		}
	}
	return true
}
