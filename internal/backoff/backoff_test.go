package backoff

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithinBounds(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 8 * time.Second}
	for i, limit := range []time.Duration{1, 2, 4, 8, 8, 8} {
		limit *= time.Second
		// Jitter keeps each wait in [limit/2, limit].
		if got := b.Next(); got < limit/2 || got > limit {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, got, limit/2, limit)
		}
	}
	b.Reset()
	if got := b.Next(); got > time.Second {
		t.Fatalf("after Reset: %v", got)
	}
}
