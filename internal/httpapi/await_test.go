package httpapi

import (
	"context"
	"testing"
	"time"
)

// TestAwaitDelivery: a publish waits while delivery runs behind, resumes as
// soon as it catches up, and never waits past maxDeliveryWait or its
// request's end.
func TestAwaitDelivery(t *testing.T) {
	behindFor := func(calls int) (func() time.Duration, *int) {
		n := new(int)
		return func() time.Duration {
			*n++
			if *n <= calls {
				return 2 * maxDeliveryLag
			}
			return maxDeliveryLag // at the bound is not behind
		}, n
	}

	lag, n := behindFor(0)
	awaitDelivery(context.Background(), lag)
	if *n != 1 {
		t.Fatalf("caught up: lag read %d times, want 1", *n)
	}

	lag, n = behindFor(5)
	awaitDelivery(context.Background(), lag)
	if *n != 6 {
		t.Fatalf("behind for 5 reads: returned after %d, want 6", *n)
	}

	start := time.Now()
	lag, _ = behindFor(1 << 30)
	awaitDelivery(context.Background(), lag)
	if waited := time.Since(start); waited < maxDeliveryWait {
		t.Fatalf("always behind: returned after %v, want maxDeliveryWait %v", waited, maxDeliveryWait)
	}

	ctx, cancel := context.WithCancel(context.Background())
	behind, n := behindFor(1 << 30)
	lag = func() time.Duration {
		if *n == 3 {
			cancel() // the client went away while its publish waited
		}
		return behind()
	}
	start = time.Now()
	awaitDelivery(ctx, lag)
	if waited := time.Since(start); waited >= maxDeliveryWait {
		t.Fatalf("cancelled request waited %v, the whole maxDeliveryWait", waited)
	}
}
