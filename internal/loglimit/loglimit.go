package loglimit

import (
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Config configures a Limiter. Zero values mean their defaults.
type Config struct {
	// Log receives the summary lines. Required.
	Log logrus.FieldLogger
	// Interval is the period over which lines are counted, and after
	// which suppressed ones are summed up. Default 10s.
	Interval time.Duration
	// SummaryLevel is the level of the summary lines. Default (zero, as
	// a summary never panics) warning; a limiter of debug lines should
	// summarise at debug.
	SummaryLevel logrus.Level
	// Burst is how many lines of one kind from one source pass in an
	// interval. Default 5.
	Burst int
	// MaxKeys bounds the (source, kind) pairs counted at once, so that
	// sources without number cannot grow the limiter: past it, lines of
	// new pairs are counted together under one key with source "others"
	// (and are let through or not as one). Default 4096.
	MaxKeys int
}

// Others is the source under which lines past Config.MaxKeys are counted.
const Others = "others"

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	if c.SummaryLevel == logrus.PanicLevel {
		c.SummaryLevel = logrus.WarnLevel
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 4096
	}
	return c
}

// Key is what lines are counted by: who caused them and what they say.
type Key struct {
	Source string
	Kind   string
}

// Limiter decides which lines to log. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	// mu guards keys.
	mu   sync.Mutex
	keys map[Key]*count
}

// count is one key's lines in its current interval.
type count struct {
	since      time.Time
	logged     int
	suppressed int
}

// New returns a limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if cfg.Log == nil {
		return nil, errors.New("loglimit: no log")
	}
	return &Limiter{cfg: cfg.withDefaults(), keys: make(map[Key]*count)}, nil
}

// Allow reports whether a line of kind caused by source may be logged
// now; if not, it is counted towards the key's summary.
func (l *Limiter) Allow(source, kind string) bool {
	return l.AllowAt(time.Now(), Key{Source: source, Kind: kind})
}

// AllowAt is Allow for key at time now.
func (l *Limiter) AllowAt(now time.Time, key Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.keys[key]
	if c == nil {
		if len(l.keys) >= l.cfg.MaxKeys {
			key.Source = Others
			c = l.keys[key]
		}
		if c == nil {
			c = &count{since: now}
			l.keys[key] = c
		}
	}
	if now.Sub(c.since) >= l.cfg.Interval {
		l.summarizeLocked(key, c, now)
		c.since, c.logged, c.suppressed = now, 0, 0
	}
	if c.logged < l.cfg.Burst {
		c.logged++
		return true
	}
	c.suppressed++
	return false
}

// Flush logs the summary of every key whose interval has ended with lines
// suppressed, and forgets the keys whose interval has ended. Call it at
// least once an interval, so that summaries are not later than that.
func (l *Limiter) Flush(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, c := range l.keys {
		if now.Sub(c.since) >= l.cfg.Interval {
			l.summarizeLocked(key, c, now)
			delete(l.keys, key)
		}
	}
	if len(l.keys) == 0 {
		// A Go map keeps the buckets of its largest size.
		l.keys = make(map[Key]*count)
	}
}

// summarizeLocked logs key's suppressed lines, if any.
func (l *Limiter) summarizeLocked(key Key, c *count, now time.Time) {
	if c.suppressed == 0 {
		return
	}
	l.cfg.Log.WithFields(logrus.Fields{
		"source": key.Source, "kind": key.Kind, "suppressed": c.suppressed,
		"period": now.Sub(c.since).Round(time.Second),
	}).Log(l.cfg.SummaryLevel, "suppressed similar log lines from one source")
}
