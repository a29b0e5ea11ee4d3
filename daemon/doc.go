// Package daemon owns a running warren peer: it loads its key, binds the
// shared punch port, keeps it registered with the rendezvous server, keeps
// one link per configured peer (punching again whenever a link is lost),
// hands inbound streams to forward's exit side, opens outbound streams for
// forward's listeners, and serves the status API and Prometheus metrics
// (GET /metrics, metrics.go).
//
// daemon is wiring and lifecycle only: protocol details live in rendezvous,
// punch, link and forward, and it must not reach into their internals.
package daemon
