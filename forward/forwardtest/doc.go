// Package forwardtest helps test code built on package forward.
//
// It owns an in-process Opener whose streams are served by a
// forward.Server as if a link were up, with no link, transport or daemon
// below. Non-test code must not import it.
package forwardtest
