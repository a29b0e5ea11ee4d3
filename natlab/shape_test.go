package natlab

import (
	"math/rand/v2"
	"testing"
	"time"
)

func testShaper(p Path) *shaper { return newShaper(p, rand.New(rand.NewPCG(1, 2))) }

func TestShaperDelay(t *testing.T) {
	s := testShaper(Path{Delay: 30 * time.Millisecond})
	for i := range 100 {
		now := time.Duration(i) * time.Millisecond
		at, v := s.admit(now, 100)
		if v != pass || at != now+30*time.Millisecond {
			t.Fatalf("packet %d at %v: released at %v (%v), want %v", i, now, at, v, now+30*time.Millisecond)
		}
	}
}

// jitterRun sends n packets 100 µs apart through path p and returns each
// one's release time.
func jitterRun(p Path, n int) (arrive, release []time.Duration) {
	s := testShaper(p)
	for i := range n {
		now := time.Duration(i) * 100 * time.Microsecond
		at, _ := s.admit(now, 100)
		arrive, release = append(arrive, now), append(release, at)
	}
	return arrive, release
}

func TestShaperJitterKeepsOrder(t *testing.T) {
	p := Path{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}
	arrive, release := jitterRun(p, 10000)
	lo, hi := time.Hour, time.Duration(0)
	for i := range release {
		if i > 0 && release[i] < release[i-1] {
			t.Fatalf("packet %d released at %v, before packet %d at %v", i, release[i], i-1, release[i-1])
		}
		d := release[i] - arrive[i]
		lo, hi = min(lo, d), max(hi, d)
		if d < p.Delay-p.Jitter || d > p.Delay+p.Jitter {
			t.Fatalf("packet %d delayed %v, outside %v ± %v", i, d, p.Delay, p.Jitter)
		}
	}
	if hi-lo < 3*p.Jitter/2 {
		t.Errorf("delays span %v..%v: want a spread of at least %v", lo, hi, 3*p.Jitter/2)
	}
}

func TestShaperJitterReorders(t *testing.T) {
	p := Path{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, Reorder: true}
	arrive, release := jitterRun(p, 10000)
	early := 0
	for i := range release {
		if i > 0 && release[i] < release[i-1] {
			early++
		}
		if d := release[i] - arrive[i]; d < p.Delay-p.Jitter || d > p.Delay+p.Jitter {
			t.Fatalf("packet %d delayed %v, outside %v ± %v", i, d, p.Delay, p.Jitter)
		}
	}
	if early < 1000 {
		t.Errorf("%d of 10000 packets overtook the one before: want many", early)
	}
}

// lossRun returns the share of n packets s drops, and the mean length of
// runs of drops.
func lossRun(s *shaper, n int) (share, meanRun float64) {
	lost, runs, prev := 0, 0, false
	for i := range n {
		_, v := s.admit(time.Duration(i), 100)
		drop := v != pass
		if drop {
			lost++
			if !prev {
				runs++
			}
		}
		prev = drop
	}
	return float64(lost) / float64(n), float64(lost) / float64(max(runs, 1))
}

func TestShaperRandomLoss(t *testing.T) {
	share, run := lossRun(testShaper(Path{LossPercent: 3}), 200000)
	if share < 0.028 || share > 0.032 || run > 1.1 {
		t.Errorf("loss %.3f%% in runs of %.2f, want 3%% in runs of about 1", 100*share, run)
	}
}

func TestShaperBurstLoss(t *testing.T) {
	b := BurstLoss(5, 4)
	if got := b.LossPercent(); got < 4.999 || got > 5.001 {
		t.Fatalf("BurstLoss(5, 4).LossPercent() = %v", got)
	}
	share, run := lossRun(testShaper(Path{Burst: b}), 400000)
	if share < 0.045 || share > 0.055 || run < 3.6 || run > 4.4 {
		t.Errorf("loss %.3f%% in runs of %.2f, want 5%% in runs of 4", 100*share, run)
	}
	// A good state that loses too, and a bad one that does not always.
	b = Burst{GoodLen: 100, BadLen: 10, LossGood: 0.01, LossBad: 0.5}
	share, _ = lossRun(testShaper(Path{Burst: b}), 400000)
	if want := b.LossPercent() / 100; share < want*0.9 || share > want*1.1 {
		t.Errorf("loss %.3f%%, want %.3f%%", 100*share, 100*want)
	}
}

func TestShaperRate(t *testing.T) {
	const rate = 10_000_000 // 1250-byte packets take 1 ms each
	s := testShaper(Path{RateBitps: rate, QueueBytes: 12500})
	// A burst of 20 at once: the queue holds 10, the rest are dropped.
	var passed []time.Duration
	for range 20 {
		if at, v := s.admit(0, 1250); v == pass {
			passed = append(passed, at)
		} else if v != dropQueue {
			t.Fatalf("verdict %v, want dropQueue", v)
		}
	}
	if len(passed) != 10 {
		t.Fatalf("%d of a 20-packet burst passed a 10-packet queue", len(passed))
	}
	for i, at := range passed {
		if want := time.Duration(i+1) * time.Millisecond; at != want {
			t.Fatalf("packet %d leaves at %v, want %v", i, at, want)
		}
	}
	// Twice the rate offered for a second: half passes, plus the queue.
	s = testShaper(Path{RateBitps: rate, QueueBytes: 12500})
	n := 0
	for i := range 2000 {
		if _, v := s.admit(time.Duration(i)*500*time.Microsecond, 1250); v == pass {
			n++
		}
	}
	if n < 1000 || n > 1011 {
		t.Errorf("%d of 2000 packets at twice the rate passed, want 1000 plus the queue's 10", n)
	}
}

func TestQueueDefault(t *testing.T) {
	if got := (Path{RateBitps: 100_000_000}).queueLimit(); got != 1_250_000 {
		t.Errorf("queue at 100 Mbit/s = %d bytes, want 100 ms worth (1250000)", got)
	}
	if got := (Path{RateBitps: 1_000_000}).queueLimit(); got != 64<<10 {
		t.Errorf("queue at 1 Mbit/s = %d bytes, want the 64 KiB floor", got)
	}
}

func TestFrameQueue(t *testing.T) {
	var q frameQueue
	for i, at := range []time.Duration{5, 3, 5, 1, 3} {
		q.push(&frame{at: at, seq: uint64(i)})
	}
	out, next := q.popDue(3, nil, 10)
	if len(out) != 3 || out[0].at != 1 || out[1].seq != 1 || out[2].seq != 4 || next != 5 {
		t.Fatalf("popDue(3) = %v, next %v", out, next)
	}
	out, next = q.popDue(10, nil, 1)
	if len(out) != 1 || out[0].seq != 0 || next != 5 {
		t.Fatalf("popDue(10, limit 1) = %v, next %v: want seq 0 first among equal times", out, next)
	}
	out, next = q.popDue(10, nil, 10)
	if len(out) != 1 || out[0].seq != 2 || next != -1 {
		t.Fatalf("popDue(10) = %v, next %v", out, next)
	}
}
