package tracker

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBufferAgainstNaiveMap checks the heap, the key index and the day
// window against a map sorted on every call: the same versions must come
// due, in (due, offset) order, with the same per-day counts.
func TestBufferAgainstNaiveMap(t *testing.T) {
	type version struct {
		offset, due int64
		payload     string
	}
	for seed := range 50 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		now := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
		tr := New(Config{Lead: time.Hour}, 0, 0, now)
		naive := map[string]version{}
		var f fixture
		var log []*kgo.Record
		for step := range 3000 {
			switch x := rng.IntN(10); {
			case x < 6:
				key := "k" + strconv.Itoa(rng.IntN(200))
				due := now.Add(time.Duration(rng.Int64N(int64(40*time.Hour))) - time.Hour).Truncate(time.Millisecond)
				// Many schedules share a due time, so offset order matters.
				if rng.IntN(3) == 0 {
					due = now.Truncate(time.Minute).Add(time.Minute)
				}
				r := f.sched(key, due, strconv.Itoa(step))
				log = append(log, r)
				tr.Observe(r, now)
				naive[key] = version{r.Offset, due.UnixMilli(), strconv.Itoa(step)}
			case x < 7:
				key := "k" + strconv.Itoa(rng.IntN(200))
				r := f.cancel(key)
				log = append(log, r)
				tr.Observe(r, now)
				delete(naive, key)
			case x < 9:
				now = now.Add(time.Duration(rng.Int64N(int64(20 * time.Minute))))
				if extend(tr, now) {
					for _, r := range log {
						tr.Admit(r, now)
					}
					require.Zero(t, tr.EndAdmit())
				}
			default:
				max := 1 + rng.IntN(20)
				items := take(tr, now, max, nil)
				var want []version
				for _, v := range naive {
					if v.due <= now.UnixMilli() {
						want = append(want, v)
					}
				}
				slices.SortFunc(want, func(a, b version) int {
					if a.due != b.due {
						return int(a.due - b.due)
					}
					return int(a.offset - b.offset)
				})
				// Versions past the window are only indexed; the naive
				// map holds them, so compare only what is inside it.
				var inWindow []version
				for _, v := range want {
					if v.due < tr.Status().WindowEnd.UnixMilli() {
						inWindow = append(inWindow, v)
					}
				}
				want = inWindow[:min(len(inWindow), max)]
				require.Len(t, items, len(want), "seed %d step %d", seed, step)
				for i, it := range items {
					require.Equal(t, want[i].offset, it.Offset, "seed %d step %d item %d", seed, step, i)
					k := string(it.Key)
					delete(naive, k)
				}
				ack(tr, items)
			}
			perDay := map[string]int64{}
			for _, v := range naive {
				perDay[time.UnixMilli(v.due).UTC().Format(time.DateOnly)]++
			}
			require.Equal(t, perDay, daily(tr), "seed %d step %d", seed, step)
		}
	}
}
