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
// session is mechanism only: which strategy fits a NAT pair is
// punch.Choose's policy, the wire is punch's, rendezvous' and transport's,
// and authentication is link's. session must not know about configured
// peers, reloads, forwards or metrics: that is the daemon's wiring.
package session
