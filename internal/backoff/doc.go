// Package backoff owns the waits of retry loops: doubling from a minimum
// to a maximum, each jittered. It knows nothing of what is retried.
//
// It owns only the arithmetic of the waits; callers own the timers and
// the loops, and it must not sleep, log or know any other package.
package backoff
