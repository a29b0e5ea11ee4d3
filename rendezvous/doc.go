// Package rendezvous owns the rendezvous server and the client protocol
// peers use to reach it: registration over a TLS 1.3 control connection on
// which both ends prove their keys, observing each peer's public endpoint,
// and coordinating punch sessions between two registered peers. It also
// answers UDP probes with the address they came from.
//
// The server is trusted for addresses only. It never sees what peers carry
// and cannot impersonate a peer: peers authenticate each other with pinned
// keys in the link layer. This package must not dial peers, punch, or carry
// peer traffic. The wire format is in spec.md.
package rendezvous
