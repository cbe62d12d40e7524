package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// watch reports a long phase's progress every ProgressEvery until stop is
// called: how much is done of total, the rate since the last report, and
// when the phase ends at that rate. A run that slows down shows where.
// done is called from another goroutine and must be safe for that.
func (r *run) watch(what string, total int, done func() int) (stop func()) {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(r.cfg.ProgressEvery)
		defer tick.Stop()
		last, lastAt := done(), time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				d := done()
				rate := float64(d-last) / now.Sub(lastAt).Seconds()
				end := "unknown"
				if rate > 0 {
					left := time.Duration(float64(total-d) / rate * float64(time.Second))
					end = fmt.Sprintf("in %v (%s)", left.Round(time.Second), now.Add(left).Format(time.TimeOnly))
				}
				r.cfg.Progress("%s: %d of %d (%.1f%%), %.0f/s, ends %s, rss %s",
					what, d, total, 100*float64(d)/float64(max(total, 1)), rate, end, gib(rss()))
				last, lastAt = d, now
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// rss returns the process's resident set now, and peakRSS its peak, from
// /proc (Linux); 0 where that cannot be read.
func rss() int64     { return procStatus("VmRSS:") }
func peakRSS() int64 { return procStatus("VmHWM:") }

func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == field {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
