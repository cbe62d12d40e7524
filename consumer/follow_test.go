package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/internal/logscan"
)

// TestFollowerWaitOutlastsItsContext: the memory of a fetch handed to the
// loop is let go only once the loop is done with it or has ended, not
// when the follower's context ends: the loop reads the events it was sent
// after shutdown begins (it finishes the batch in flight meanwhile), and
// records freed under it are zeroed while a tracker reads them.
func TestFollowerWaitOutlastsItsContext(t *testing.T) {
	e := &Engine{loopDone: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	f := newFollower(ctx, e, nil)
	set := &fetchSet{dec: []logscan.Decoded{{}}, done: make(chan struct{})}
	waited := make(chan struct{})
	go func() {
		f.wait(set)
		close(waited)
	}()
	cancel()
	select {
	case <-waited:
		require.FailNow(t, "the set was let go when the context ended, the loop still reading it")
	case <-time.After(50 * time.Millisecond):
	}
	close(set.done)
	<-waited

	// Sent, and the loop ended without reading it: let go.
	set.done = make(chan struct{})
	waited = make(chan struct{})
	go func() {
		f.wait(set)
		close(waited)
	}()
	close(e.loopDone)
	<-waited
}
