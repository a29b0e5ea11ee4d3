package link

import (
	"context"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// heapInUse is the process's live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// Issue 15, finding 9: a peer opens many streams to a target that never
// reads (the exit's copy reads a first chunk, which opens the stream's
// window to StreamWindow, then blocks on the target) and fills every
// window. The exit must hold at most ReceiveBudget of it: before the
// budget, each stream held its whole window (here 48 × 1 MiB).
func TestReceiveBudgetBoundsStreamsNoOneReads(t *testing.T) {
	const (
		window  = 1 << 20
		budget  = 8 << 20
		streams = 48
	)
	attacker, exit := linksWith(t, &Config{StreamWindow: window, ReceiveBudget: budget})
	before := heapInUse()

	var held sync.WaitGroup
	accepted := make(chan *Stream, streams)
	held.Go(func() {
		for range streams {
			c, err := exit.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			s := c.(*Stream)
			// The target's first read, then nothing: it never reads again.
			s.Read(make([]byte, 1))
			accepted <- s
		}
	})
	payload := make([]byte, 2*window)
	var resets, sent sync.WaitGroup
	var mu sync.Mutex
	reset := 0
	for range streams {
		c, err := attacker.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sent.Go(func() {
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write(payload); isReset(err) {
				mu.Lock()
				reset++
				mu.Unlock()
			}
		})
	}
	sent.Wait()
	resets.Wait()
	held.Wait()
	close(accepted)

	if b := exit.Stats().Buffered; b > budget {
		t.Errorf("exit buffers %d unread bytes, over its budget of %d", b, budget)
	}
	// yamux's buffers may hold up to twice what they buffer (they grow by
	// doubling); without the budget the growth is streams × window and
	// more.
	if grew := heapInUse() - before; grew > 3*budget {
		t.Errorf("heap grew %d MiB with %d streams no one reads; budget %d MiB", grew>>20, streams, budget>>20)
	}
	if reset == 0 {
		t.Errorf("no stream was reset: the peer sent %d MiB unread", streams*2*window>>20)
	}
	t.Logf("exit buffered %d KiB; %d of %d streams reset", exit.Stats().Buffered>>10, reset, streams)

	// The streams' unread bytes are given back when they end, and a new
	// stream carries data again.
	for s := range accepted {
		s.Close()
	}
	if b := exit.Stats().Buffered; b != 0 {
		t.Errorf("exit still counts %d unread bytes after closing every stream", b)
	}
	s, r := openStreams(t, attacker, exit)
	go s.Write(payload[:window])
	if _, err := io.ReadFull(r, make([]byte, window)); err != nil {
		t.Fatalf("a stream after the attack: %v", err)
	}
}

// Issue 15, finding 9: streams the exit closes (a refusal: a reply, then
// Close) whose peer never finishes them stayed in yamux for
// StreamCloseTimeout after giving back their place under MaxStreams, so a
// peer could have any number of them held at once. Now they keep their
// place until the link forgets them: beyond MaxStreams, the peer's streams
// are refused.
func TestLingeringStreamsCountAgainstMaxStreams(t *testing.T) {
	const (
		maxStreams = 16
		flood      = 200
	)
	attacker, exit := linksWith(t, &Config{MaxStreams: maxStreams, StreamCloseTimeout: time.Minute})
	go func() {
		for {
			c, err := exit.Accept()
			if err != nil {
				return
			}
			// The request, the refusal, and Close.
			c.Read(make([]byte, 1))
			c.Write([]byte("refused"))
			c.Close()
		}
	}()
	var opened []io.Closer
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	for i := range flood {
		c, err := attacker.Open(context.Background())
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		// Announce the stream; never read, never finish it.
		c.Write([]byte{1})
		opened = append(opened, c)
	}
	time.Sleep(500 * time.Millisecond)
	if n := exit.sess.NumStreams(); n > 2*maxStreams {
		t.Fatalf("exit's yamux holds %d streams after %d refused; MaxStreams is %d", n, flood, maxStreams)
	}
}
