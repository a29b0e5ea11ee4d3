// Package admit keeps a daemon's listeners up under floods. Serve runs an
// accept loop that outlives accept errors (out of file descriptors, a
// connection reset while queued) by backing off and going on, as net/http's
// Server does, instead of closing the port for good. Gate caps the
// connections a listener holds before they prove anything (a hello, a
// SOCKS5 handshake), per source address and in all, so that one source
// cannot take every place. Listener applies a Gate to a whole connection's
// life, for servers such as net/http that own their accept loop.
//
// It knows nothing of what the connections carry: callers own the
// handshakes and their deadlines.
package admit
