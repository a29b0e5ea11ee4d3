package waitfor

import (
	"context"
	"sync"
)

// Group waits until wg's counter is zero or ctx ends, and returns
// ctx.Err() in the second case. The goroutine that watches wg ends with
// the work it waits for, not with ctx: callers bound that work themselves
// (a timeout, a closed connection), as every Shutdown here does.
func Group(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
