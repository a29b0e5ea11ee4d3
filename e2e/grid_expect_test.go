package e2e

// gridExpect is the least each grid cell must reach: "direct" (TCP or UDP),
// "relay", or "fail". It starts at what works today and only ever
// tightens; the punching issue sets where it must end.
var gridExpect = map[string]string{
	"open/open": "direct", "open/cone": "direct", "open/cone-rst": "direct",
	"open/symseq": "direct", "open/symseq-busy": "direct", "open/symrand": "direct",
	"cone/open": "direct", "cone/cone": "direct", "cone/cone-rst": "direct",
	"cone/symseq": "fail", "cone/symseq-busy": "fail", "cone/symrand": "fail",
	"cone-rst/open": "direct", "cone-rst/cone": "direct", "cone-rst/cone-rst": "direct",
	"cone-rst/symseq": "fail", "cone-rst/symseq-busy": "fail", "cone-rst/symrand": "fail",
	"symseq/open": "direct", "symseq/cone": "fail", "symseq/cone-rst": "fail",
	"symseq/symseq": "fail", "symseq/symseq-busy": "fail", "symseq/symrand": "fail",
	"symseq-busy/open": "direct", "symseq-busy/cone": "fail", "symseq-busy/cone-rst": "fail",
	"symseq-busy/symseq": "fail", "symseq-busy/symseq-busy": "fail", "symseq-busy/symrand": "fail",
	"symrand/open": "direct", "symrand/cone": "fail", "symrand/cone-rst": "fail",
	"symrand/symseq": "fail", "symrand/symseq-busy": "fail", "symrand/symrand": "fail",
	"same-nat (cone)":               "direct",
	"double-nat (cone+cone)/cone":   "direct",
	"double-nat (symseq+cone)/open": "direct",
}
