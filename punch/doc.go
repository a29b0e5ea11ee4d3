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
// punch must not speak TLS, yamux, or the rendezvous protocol, and it must
// not decide which connection becomes the link.
package punch
