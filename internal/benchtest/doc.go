// Package benchtest holds what the throughput benchmarks of several
// packages share. It is for tests only.
//
// It owns the measuring loops (bulk streaming, request/response round
// trips) over connections the caller made; what is measured, and the
// baseline it is compared with, stay in the benchmarks; and loopback
// connection pairs and closed addresses for tests. Non-test code
// must not import it.
package benchtest
