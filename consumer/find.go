package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/scheduler-dev/scheduler/tracker"
)

// Held is what this instance's memory says of a schedule key.
type Held struct {
	// Owned: this instance owns the partition. Loaded: it has read the
	// partition up to its end offset at assignment, so Found is the
	// answer, not a guess: a loaded owner that does not find a key holds
	// no pending version of it.
	Owned, Loaded bool
	Found         bool
	Version       tracker.Version
}

// evFind asks the loop for a key's live version. The loop answers it
// between two other events, so a lookup takes no lock on any path the
// loop runs.
type evFind struct {
	tp    tp
	key   []byte
	reply chan Held
}

// findQueue is how many questions may wait for the loop; one more is
// refused (ErrBusy), so that people looking keys up can never queue work
// in front of dispatching.
const findQueue = 16

// ErrBusy is the error of a Find the loop has no room for now.
var ErrBusy = errors.New("the dispatch loop is busy; ask again")

// Find returns what the loop knows of key in a schedules partition. It is
// safe to call from any goroutine. The question waits in a queue of its
// own (never in front of records or batch outcomes); when that queue is
// full Find fails at once with ErrBusy, and the loop answers from memory
// without waiting on anything.
func (e *Engine) Find(ctx context.Context, topic string, partition int32, key []byte) (Held, error) {
	ev := evFind{tp: tp{topic, partition}, key: key, reply: make(chan Held, 1)}
	select {
	case e.finds <- ev:
	default:
		return Held{}, fmt.Errorf("asking the loop about %s: %w", ev.tp, ErrBusy)
	}
	select {
	case h := <-ev.reply:
		return h, nil
	case <-ctx.Done():
		return Held{}, fmt.Errorf("asking the loop about %s: %w", ev.tp, context.Cause(ctx))
	case <-e.loopDone:
		return Held{}, fmt.Errorf("asking the loop about %s: the loop has stopped", ev.tp)
	}
}

func (e *Engine) onFind(ev evFind) {
	var h Held
	if p := e.parts[ev.tp]; p != nil {
		h.Owned, h.Loaded = true, p.tr.Status().Loaded
		h.Version, h.Found = p.tr.Find(ev.key)
	}
	ev.reply <- h // buffered: never blocks the loop
}
