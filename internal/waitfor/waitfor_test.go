package waitfor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestGroup(t *testing.T) {
	var wg sync.WaitGroup
	if err := Group(context.Background(), &wg); err != nil {
		t.Fatalf("empty group: %v", err)
	}
	release := make(chan struct{})
	wg.Go(func() { <-release })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := Group(ctx, &wg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy group = %v, want the deadline", err)
	}
	close(release)
	if err := Group(context.Background(), &wg); err != nil {
		t.Fatalf("finished group: %v", err)
	}
}
