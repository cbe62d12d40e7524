package partitioner

import (
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	require.NoError(t, Check(Murmur2))
	require.NoError(t, Check(ConsistentRandom))
	require.EqualError(t, Check("random"), `"random" is not murmur2 or consistent_random`)
	require.Error(t, Check(""))
}

// TestPartition pins the placements producers compute: murmur2 as Kafka's
// Java client (Utils.toPositive(Utils.murmur2(key)) % n), CRC32 as
// librdkafka's consistent_random.
func TestPartition(t *testing.T) {
	// Kafka's UtilsTest.testMurmur2: the raw hashes; a partition is the
	// hash with its sign bit cleared, modulo n.
	for key, hash := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		for _, n := range []int{1, 7, 1000} {
			want := int(hash&0x7fffffff) % n
			require.Equal(t, want, Partitioner(Murmur2).Partition([]byte(key), n), key)
			require.Equal(t, want, Partitioner("").Partition([]byte(key), n), "the zero value is murmur2")
		}
	}
	require.Equal(t, Partitioner(Murmur2).Partition([]byte{}, 7), Partitioner(Murmur2).Partition(nil, 7), "nil hashes as empty")

	for _, key := range []string{"a", "order-1", "customer-7"} {
		want := int(crc32.ChecksumIEEE([]byte(key)) % 12)
		require.Equal(t, want, Partitioner(ConsistentRandom).Partition([]byte(key), 12), key)
	}
	seen := map[int]bool{}
	for range 200 {
		p := Partitioner(ConsistentRandom).Partition(nil, 4)
		require.True(t, p >= 0 && p < 4)
		seen[p] = true
	}
	require.Greater(t, len(seen), 1, "an empty key is placed at random under consistent_random")
}
