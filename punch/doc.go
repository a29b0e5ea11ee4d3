// Package punch owns hole punching: the sockets that share the daemon's
// local port (SO_REUSEADDR/SO_REUSEPORT), the candidate endpoints of a peer,
// and the loops that open raw connections to those candidates while the
// peer does the same towards us, until the NATs between let one through.
//
// Every raw connection punch produces starts with a hello naming the punch
// session it belongs to, so stray connections (scanners, stale attempts)
// are dropped before anything else reads them. The hello authenticates
// nothing: the link layer's TLS handshake does that.
//
// A UDP punch exchanges small authenticated packets (spec.md beside this
// file); where it sends and how much are bounded by a Scope and a Budget,
// whatever the peer or the rendezvous server claims. Once a link runs over
// a UDP path, Roam keeps the path following the peer, with keys from the
// link's TLS session (never from the punch session, which the server
// issued and the wire shows).
//
// punch must not speak TLS, yamux, or the rendezvous protocol, and it must
// not decide which connection becomes the link.
package punch
