package e2e

import "strings"

// gridTransports are the transports each grid cell is run over, alone.
var gridTransports = []string{"tcp", "udp"}

// gridExpect is the least each grid cell must reach over each transport:
// "direct", "relay", or "fail"; "tcp udp" when the two differ. It only
// ever tightens. Pairs of two symmetric NATs where one is random have no
// direct path to expect and relay through the rendezvous server.
var gridExpect = map[string]string{
	"open/open": "direct", "open/cone": "direct", "open/cone-rst": "direct",
	"open/symseq": "direct", "open/symseq-busy": "direct", "open/symrand": "direct",
	"cone/open": "direct", "cone/cone": "direct", "cone/cone-rst": "direct",
	"cone/symseq": "direct", "cone/symseq-busy": "direct", "cone/symrand": "fail direct",
	"cone-rst/open": "direct", "cone-rst/cone": "direct", "cone-rst/cone-rst": "direct",
	"cone-rst/symseq": "direct", "cone-rst/symseq-busy": "direct", "cone-rst/symrand": "fail direct",
	"symseq/open": "direct", "symseq/cone": "direct", "symseq/cone-rst": "direct",
	"symseq/symseq": "fail direct", "symseq/symseq-busy": "fail direct", "symseq/symrand": "relay",
	"symseq-busy/open": "direct", "symseq-busy/cone": "direct", "symseq-busy/cone-rst": "direct",
	"symseq-busy/symseq": "fail direct", "symseq-busy/symseq-busy": "fail direct", "symseq-busy/symrand": "relay",
	"symrand/open": "direct", "symrand/cone": "fail direct", "symrand/cone-rst": "fail direct",
	"symrand/symseq": "relay", "symrand/symseq-busy": "relay", "symrand/symrand": "relay",
	"same-nat (cone)":               "direct",
	"double-nat (cone+cone)/cone":   "direct",
	"double-nat (symseq+cone)/open": "direct",
}

// expectation returns the least a cell must reach over transport; a
// single word applies to every transport.
func expectation(cell, transport string) string {
	f := strings.Fields(gridExpect[cell])
	switch {
	case len(f) == 1:
		return f[0]
	case len(f) == 2 && transport == "tcp":
		return f[0]
	case len(f) == 2 && transport == "udp":
		return f[1]
	}
	return ""
}
