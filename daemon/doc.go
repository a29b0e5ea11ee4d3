// Package daemon owns a running warren peer: it loads its key, binds the
// shared punch port, keeps it registered with the rendezvous server,
// classifies its NAT (nat.go), has its router map the punch port and
// reports the mapping with its NAT (portmap.go; the mappings go at
// shutdown), keeps one link per configured peer (punching again whenever a
// link is lost, and upgrading a relayed link, at once when its own NAT
// report changes, as when a mapping comes late), remembers which path won
// per peer and pair of networks and lets a remembered relay go first
// (pathmemory.go, over internal/pathmemory), hands inbound streams to
// forward's exit side, opens outbound streams for forward's listeners, and
// serves the status API and Prometheus metrics
// (GET /metrics, metrics.go).
//
// daemon is wiring and lifecycle only: a punch session, from its
// instruction to its link, is package session's (which paths the config
// allows is decided here, in sessionPaths); protocol details live in
// rendezvous, punch, transport, link and forward, and daemon must not
// reach into their internals nor import transport.
package daemon
