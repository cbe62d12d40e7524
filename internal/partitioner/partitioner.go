// Package partitioner places a key among a topic's partitions the way the
// producers a schedule comes from do (SPEC 3.2.1 and 3.3): murmur2 as
// Kafka's Java client, franz-go and KafkaJS, consistent_random (CRC32) as
// librdkafka and every client built on it (Karafka/WaterDrop,
// confluent-kafka for Python, Go and .NET, kcat), fnv1a as sarama's
// default and kafka-go's Hash balancer. The service places target
// messages with one of them (--partitioner), and the tools and the console
// find the schedules partition of a key with them (--key-partitioner):
// auto looks in the partition of each, since producers of one topic may
// use different clients.
package partitioner

import (
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Names of the partitioners, as --partitioner and --key-partitioner take
// them.
const (
	// Murmur2 hashes like Kafka's Java producer, franz-go and KafkaJS:
	// murmur2 of the key with its sign bit cleared, modulo the partitions.
	Murmur2 = "murmur2"
	// ConsistentRandom hashes like librdkafka's default, which Ruby
	// (WaterDrop, Karafka), Python, .NET and C producers use: CRC32 of the
	// key, random when the key is empty.
	ConsistentRandom = "consistent_random"
	// FNV1a hashes like sarama's default (NewHashPartitioner) and
	// kafka-go's Hash balancer: the FNV-1a hash of the key read as a
	// signed 32-bit integer, modulo the partitions, sign dropped.
	FNV1a = "fnv1a"
	// Default is the partitioner of --partitioner when none is given.
	Default = Murmur2

	// Auto is not a partitioner but a search (--key-partitioner): the
	// partition of each partitioner of Known is a candidate.
	Auto = "auto"
	// DefaultKey is the default of --key-partitioner.
	DefaultKey = Auto
)

// Known lists every partitioner, in the order auto reports them.
var Known = []Partitioner{Murmur2, ConsistentRandom, FNV1a}

// Partitioner is a partitioner by name. The zero value is Default.
type Partitioner string

// Check refuses a name that is not a partitioner; its error reads after
// the flag's name ("--partitioner: ...").
func Check(name string) error {
	if slices.Contains(Known, Partitioner(name)) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", name, names(Known))
}

// CheckKey refuses a name that is neither auto nor a partitioner, for
// --key-partitioner.
func CheckKey(name string) error {
	if name == Auto || slices.Contains(Known, Partitioner(name)) {
		return nil
	}
	return fmt.Errorf("%q is not %s or one of %s", name, Auto, names(Known))
}

func names(ps []Partitioner) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

var murmur2 = kgo.StickyKeyPartitioner(nil).ForTopic("")

// Partition returns the partition among n (n > 0) that key hashes to. A
// nil key hashes as an empty one under murmur2 and fnv1a; under
// consistent_random an empty key is placed at random, as librdkafka does.
func (p Partitioner) Partition(key []byte, n int) int {
	switch p {
	case ConsistentRandom:
		if len(key) == 0 {
			return rand.IntN(n)
		}
		return int(crc32.ChecksumIEEE(key) % uint32(n))
	case FNV1a:
		h := fnv.New32a()
		_, _ = h.Write(key)
		part := int32(h.Sum32()) % int32(n)
		if part < 0 {
			part = -part
		}
		return int(part)
	}
	if key == nil {
		key = []byte{} // a nil key would make the sticky partitioner pick any
	}
	return murmur2.Partition(&kgo.Record{Key: key}, n)
}

// Candidate is a partition a key may have been written to, and the
// partitioners that put it there.
type Candidate struct {
	Partition int32
	By        []Partitioner
}

// Names returns the candidate's partitioners, comma-separated.
func (c Candidate) Names() string { return names(c.By) }

// Candidates returns the partitions among n where a producer using a
// partitioner named by name (Auto: any of Known) writes key, each once,
// in the order of Known. A partitioner that places key at random
// (consistent_random, for an empty key) names no partition and is left out.
func Candidates(name string, key []byte, n int) []Candidate {
	by := []Partitioner{Partitioner(name)}
	if name == Auto {
		by = Known
	}
	var out []Candidate
	for _, p := range by {
		if p == ConsistentRandom && len(key) == 0 {
			continue
		}
		part := int32(p.Partition(key, n))
		i := slices.IndexFunc(out, func(c Candidate) bool { return c.Partition == part })
		if i < 0 {
			out = append(out, Candidate{Partition: part})
			i = len(out) - 1
		}
		out[i].By = append(out[i].By, p)
	}
	return out
}
