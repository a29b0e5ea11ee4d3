package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff yields growing, jittered waits. Set Min and Max (Max ≥ Min > 0);
// the zero cur starts at Min.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next wait: a random duration in [d/2, d], where d is
// Min on the first call after Reset and doubles, up to Max, on each call
// after. The jitter keeps peers that lost something together (a server
// restart, a shared link) from retrying in step.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

// Reset starts the waits again from Min.
func (b *Backoff) Reset() { b.cur = 0 }
