package punch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// BudgetConfig sizes a Budget. The zero value of a field means its default.
type BudgetConfig struct {
	// Rate caps the punch packets per second of every punch session
	// together (the link's spray_rate): bursts get users flagged as port
	// scanners. Default 2000.
	Rate int
	// PerMinute caps the punch packets of every punch session together
	// in any minute, so that peers (or a server) that start
	// session after session cannot keep the daemon spraying. Default 3 ×
	// Rate: room for one session's whole MaxProbes (2 × Rate) and the
	// pings of many more.
	PerMinute int
}

// budgetBurst is how far behind its rate a stalled sender may catch up at
// once: a Go timer sleeps no finer than about a millisecond, so pacing one
// packet per tick would cap a spray near 1000 packets/s, but a stall must
// not turn into a scanner-like burst either.
const budgetBurst = 5 * time.Millisecond

// budgetSlots is the resolution of the per-minute window: one counter per
// second.
const budgetSlots = 60

// Budget is one daemon's allowance of punch packets, which every punch
// session draws from (UDPConfig.Budget, and Config.Budget once per TCP
// connect attempt): packets are paced at Rate and no more than PerMinute
// go out in any minute. A UDP session's own cap is UDPConfig.MaxProbes.
// Its methods are safe for concurrent use.
type Budget struct {
	cfg   BudgetConfig
	pace  *rate.Limiter
	start time.Time

	// mu guards the per-minute window: slots[i] counts the packets of the
	// second secs[i] (seconds since start).
	mu    sync.Mutex
	slots [budgetSlots]int
	secs  [budgetSlots]int64
}

// NewBudget returns a budget; nil cfg means every default.
func NewBudget(cfg *BudgetConfig) (*Budget, error) {
	c := BudgetConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Rate < 0 || c.PerMinute < 0 {
		return nil, fmt.Errorf("punch budget: negative rate %d or per-minute cap %d", c.Rate, c.PerMinute)
	}
	if c.Rate == 0 {
		c.Rate = 2000
	}
	if c.PerMinute == 0 {
		c.PerMinute = 3 * c.Rate
	}
	burst := max(1, int(float64(c.Rate)*budgetBurst.Seconds()))
	return &Budget{cfg: c, pace: rate.NewLimiter(rate.Limit(c.Rate), burst), start: time.Now()}, nil
}

// Rate returns the packets per second the budget paces at.
func (b *Budget) Rate() int { return b.cfg.Rate }

// wait returns once one more packet may go (paced, and within the minute's
// cap), or false if ctx ends first.
func (b *Budget) wait(ctx context.Context) bool {
	for !b.take() {
		// The window frees up a second at a time.
		select {
		case <-time.After(time.Second - time.Since(b.start)%time.Second):
		case <-ctx.Done():
			return false
		}
	}
	return b.pace.Wait(ctx) == nil
}

// take counts one packet against the minute's cap, unpaced, if the cap
// allows it.
func (b *Budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := int64(time.Since(b.start) / time.Second)
	i := now % budgetSlots
	if b.secs[i] != now {
		b.secs[i], b.slots[i] = now, 0
	}
	sum := 0
	for j := range b.slots {
		if now-b.secs[j] < budgetSlots {
			sum += b.slots[j]
		}
	}
	if sum >= b.cfg.PerMinute {
		return false
	}
	b.slots[i]++
	return true
}
