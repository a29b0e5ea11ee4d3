// Package bufcopy copies bytes between connections cheaply when they are
// idle and fast when they are busy: the forwards' copies (package forward)
// and the rendezvous server's relay both use it.
//
// It owns the copy buffers and their pools: a copy from a socket waits for
// readability holding no buffer, a copy from a stream that says when it
// may be readable (Notifier, a link stream) runs on a goroutine only while
// the stream has data (Pump), and a copy moving data reads into large
// pooled buffers. A Copier's largest single Write is MaxWrite bytes, which
// a caller that meters writes (the relay's rate) must allow.
//
// It must not know what it copies or for whom: no protocols, no
// half-close or reset policy (the callers decide how a copy ends), no
// logging.
package bufcopy
