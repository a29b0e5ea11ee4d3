// Package demo runs warren's main job on loopback in one process: a
// rendezvous server, two peers ("laptop" and "home"), a web page on "home"
// exposed to "laptop", and a forward and a SOCKS5 listener on "laptop". It
// fetches the page through both and tells the user what to try next.
//
// demo only composes the real packages through their public APIs and real
// config text; it must not contain protocol logic of its own.
package demo
