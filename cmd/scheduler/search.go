package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/scheduler-dev/scheduler/console"
	"github.com/scheduler-dev/scheduler/internal/partitioner"
)

// keyPartitionerFlag registers how the tools that address a schedule by
// key alone find its partition (SPEC 3.2.1).
func keyPartitionerFlag(f *flagSet, p *string) {
	*p = partitioner.DefaultKey
	f.String(p, "key-partitioner", "how the producer partitioned the key: auto (look in the partition of each of murmur2, consistent_random and fnv1a, and use the one holding it), or one of those")
}

// progressAfter is how long a search runs before it says how far it is.
const progressAfter = 2 * time.Second

// searchProgress returns a console.FinderConfig.Progress that prints to w,
// once the search has run progressAfter and then every progressAfter,
// how many records it has read and of which partition: reading a large
// partition for a key it does not hold takes seconds.
func searchProgress(w io.Writer, clock func() time.Time) func(topic string, partition int32, read int64) {
	var mu sync.Mutex
	start := clock()
	last := start
	return func(topic string, partition int32, read int64) {
		mu.Lock()
		defer mu.Unlock()
		now := clock()
		if now.Sub(start) < progressAfter || now.Sub(last) < progressAfter {
			return
		}
		last = now
		fmt.Fprintf(w, "searching %s partition %d for the key: %d records read (%s)\n", topic, partition, read, now.Sub(start).Round(time.Second))
	}
}

// searchedList names the partitions a search looked in, with the
// partitioners that put the key there.
func searchedList(ss []console.Searched) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%d (%s)", s.Partition, strings.Join(s.Partitioners, ", "))
	}
	return strings.Join(out, ", ")
}
