// Package labtest gives tests a natlab.Lab that is removed however the test
// ends: normally, by t.Fatal, by the test deadline (-timeout) or by Ctrl-C.
//
// It owns a test's lab lifetime and the skip-or-fail decision when the
// kernel lab is unavailable; building topologies stays in natlab.
package labtest
