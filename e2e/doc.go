// Package e2e holds warren's end-to-end tests: the real warren binary, real
// clients (curl) and real services, on loopback and behind real kernel NATs
// built by natlab. It has no code outside its tests.
package e2e
