package link

import (
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// budget counts the bytes the peer has sent on the link's streams that no
// one has read yet: what yamux holds in its streams' receive buffers on
// the peer's behalf. yamux bounds each stream by its window (256 KiB
// before the first read, StreamWindow after) but not their sum, so a peer
// that opens many streams to a target that never reads could make this
// end hold StreamWindow times MaxStreams. The link counts each data frame
// as its header goes by (observe) and each byte a Stream's Read returns,
// and resets the stream whose frame takes the total over ReceiveBudget.
//
// A stream's count lives from its first frame (the peer's SYN, or its ACK
// of a stream we opened) until the stream ends here, or the peer resets
// it: then what it held is no one's to read, and goes when yamux forgets
// the stream.
type budget struct {
	limit int64

	mu    sync.Mutex // guards the fields below
	total int64
	m     map[uint32]int64 // unread bytes per stream
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, m: make(map[uint32]int64)}
}

// open starts counting stream id, if it is not counted yet.
func (b *budget) open(id uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[id]; !ok {
		b.m[id] = 0
	}
}

// received counts n bytes arriving on stream id and reports whether they
// take the link over its budget. Frames for a stream not counted (ended
// here, so yamux discards them or the closing watch resets the stream)
// are not counted.
func (b *budget) received(id uint32, n int64) (over bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held, ok := b.m[id]
	if !ok {
		return false
	}
	if b.total+n > b.limit {
		return true
	}
	b.m[id] = held + n
	b.total += n
	return false
}

// read counts n bytes of stream id read by the application.
func (b *budget) read(id uint32, n int) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	held, ok := b.m[id]
	if !ok {
		return
	}
	d := min(int64(n), held)
	b.m[id] = held - d
	b.total -= d
}

// forget stops counting stream id: it ended here, or was reset.
func (b *budget) forget(id uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= b.m[id]
	delete(b.m, id)
}

// buffered is the link's unread total.
func (b *budget) buffered() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// stop forgets every stream: the link has closed.
func (b *budget) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m = make(map[uint32]int64)
	b.total = 0
}

// refusalLog logs refused streams at most once per interval: a peer that
// opens streams as fast as it can must not make the log grow as fast. The
// first refusal of a burst is logged at once; the ones after it are
// counted into the next line.
type refusalLog struct {
	log      logrus.FieldLogger
	interval time.Duration

	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// refused logs one refusal, or counts it for the next line.
func (r *refusalLog) refused(msg string, fields logrus.Fields) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.last = now
	n := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	r.log.WithFields(fields).WithField("refused_since_last_line", n).Warn(msg)
}
