// Package partitioner places a key among a topic's partitions the way the
// producers a schedule comes from do (SPEC 3.3): murmur2 as Kafka's Java
// client and franz-go, or consistent_random as librdkafka (Ruby and C
// producers). The service places target messages with it, and the tools
// and the console find the schedules partition of a key with it, so a key
// lands, and is looked for, in one place.
package partitioner

import (
	"fmt"
	"hash/crc32"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Names of the partitioners, as --partitioner takes them.
const (
	// Murmur2 hashes like Kafka's Java producer and franz-go.
	Murmur2 = "murmur2"
	// ConsistentRandom hashes like librdkafka's default, which Ruby
	// (WaterDrop) and C producers use: CRC32 of the key, random when the
	// key is empty.
	ConsistentRandom = "consistent_random"
	// Default is the partitioner of --partitioner when none is given.
	Default = Murmur2
)

// Partitioner is a partitioner by name. The zero value is Default.
type Partitioner string

// Check refuses a name that is not a partitioner; its error reads after
// the flag's name ("--partitioner: ...").
func Check(name string) error {
	switch name {
	case Murmur2, ConsistentRandom:
		return nil
	}
	return fmt.Errorf("%q is not %s or %s", name, Murmur2, ConsistentRandom)
}

var murmur2 = kgo.StickyKeyPartitioner(nil).ForTopic("")

// Partition returns the partition among n (n > 0) that key hashes to. A
// nil key hashes as an empty one under murmur2; under consistent_random
// an empty key is placed at random, as librdkafka does.
func (p Partitioner) Partition(key []byte, n int) int {
	if p == ConsistentRandom {
		if len(key) == 0 {
			return rand.IntN(n)
		}
		return int(crc32.ChecksumIEEE(key) % uint32(n))
	}
	if key == nil {
		key = []byte{} // a nil key would make the sticky partitioner pick any
	}
	return murmur2.Partition(&kgo.Record{Key: key}, n)
}
