// Package pathmemory remembers, per peer and per pair of networks, which
// path of a punch session won and how long it took, in a small file in the
// daemon's state directory, so that the next session on the same networks
// can try the winner first (issue 17, "Remember and explain").
//
// It owns the file, its format and its expiry. It does not decide what
// trying a path first means (package session does) nor when a result is
// worth recording (the daemon does). The file is a cache: one that cannot
// be read is reported and replaced, never a reason not to start.
package pathmemory
