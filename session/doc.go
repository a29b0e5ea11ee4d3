// Package session turns one punch session into a link. A Session holds
// what the session knows once its punch instruction has arrived: its id
// and side, which end controls (computed once, here), both NATs, the
// strategy punch.Choose picked for them, where its punches may send (a
// punch.Scope) and the peer's endpoints within it, and the second step
// the rendezvous server sends later (a value to wait on).
//
// Each way of reaching a peer is a Path: direct TCP (Inbound and TCP),
// direct UDP over QUIC or KCP (UDP) and a relay through the rendezvous
// server (Relay). A Path knows its name and its Plan (the stage it waits
// for, its delay) and turns a session into raw connections to the peer.
// Race runs a session's paths by their plans, has link authenticate every
// connection they offer, nominates the first one that passes, and reports
// why each other path lost. A new path is one new file with one new Path.
//
// The UDP path with Stream "auto" measures the path before it offers a
// link (a probe train in the punch) and picks QUIC or KCP from it
// (transport.ChooseStream); the session's Choice records what it
// measured and chose. At the controlling end the race then puts a gate
// (tcpGate) in front of direct TCP: TCP candidates wait for the
// measurement, and on a long lossy path for the UDP link, unless the
// server's round-trip estimate (Session.RTT) or the TCP connection's own
// (the kernel's, on Linux) says the path is a LAN. The
// session's timers that wait on round trips (the relay's head start, the
// UDP path's waits, the race's timeout) grow with that estimate.
//
// session is mechanism only: which strategy fits a NAT pair is
// punch.Choose's policy, the wire is punch's, rendezvous' and transport's,
// and authentication is link's. session must not know about configured
// peers, reloads, forwards or metrics: that is the daemon's wiring.
package session
