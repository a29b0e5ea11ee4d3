// Package loglimit keeps one noisy source from flooding a log: it lets a
// few lines of each kind from each source through per interval and turns
// the rest into one summary line ("suppressed N similar lines") when the
// interval ends. Anything that logs per network event a stranger can
// cause (a connection, a report, a request) asks it first.
//
// A Limiter starts no goroutine: its owner calls Flush on a timer of its
// own (the rendezvous server's janitor does, every second), and Allow
// also rolls a key's interval over when it sees it has ended.
package loglimit
