package partitioner

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	for _, name := range []string{Murmur2, ConsistentRandom, FNV1a} {
		require.NoError(t, Check(name))
		require.NoError(t, CheckKey(name))
	}
	require.NoError(t, CheckKey(Auto))
	require.EqualError(t, Check("random"), `"random" is not one of murmur2, consistent_random, fnv1a`)
	require.EqualError(t, Check(Auto), `"auto" is not one of murmur2, consistent_random, fnv1a`, "auto chooses no partition")
	require.EqualError(t, CheckKey("crc32"), `"crc32" is not auto or one of murmur2, consistent_random, fnv1a`)
	require.Error(t, Check(""))
	require.Error(t, CheckKey(""))
}

// TestMurmur2 pins the placements of Kafka's Java client
// (Utils.toPositive(Utils.murmur2(key)) % n), franz-go's and KafkaJS's.
func TestMurmur2(t *testing.T) {
	// Kafka's UtilsTest.testMurmur2: the raw hashes; a partition is the
	// hash with its sign bit cleared, modulo n. With n = 2^31-1 the
	// partition is the cleared hash itself.
	for key, hash := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		for _, n := range []int{1, 7, 1000, 1<<31 - 1} {
			want := int(hash&0x7fffffff) % n
			require.Equal(t, want, Partitioner(Murmur2).Partition([]byte(key), n), key)
			require.Equal(t, want, Partitioner("").Partition([]byte(key), n), "the zero value is murmur2")
		}
	}
	require.Equal(t, Partitioner(Murmur2).Partition([]byte{}, 7), Partitioner(Murmur2).Partition(nil, 7), "nil hashes as empty")
}

// librdkafkaKeys are the keys of librdkafka's partitioner test
// (tests/0048-partitioner.c, do_test_partitioners), and the hashes it
// expects of each partitioner: CRC32 for consistent_random, murmur2 with
// the sign bit cleared, and FNV-1a as a positive signed value (the same
// placement as sarama's default and kafka-go's Hash). Its partitions are
// these modulo 17 and modulo 7.
var librdkafkaKeys = []struct {
	key                   string
	crc32, murmur2, fnv1a uint32
}{
	{"", 0, 0x106e08d9, 0x7ee3623b},
	{"23456", 0xb1b451d7, 0x058d780f, 0x27e6f469},
	{"this is another string with more length to it perhaps", 0xb0150df7, 0x4f7703da, 0x155e3e5f},
	{"hejsan", 0xd077037e, 0x5ec19395, 0x17b1e27a},
}

func TestLibrdkafkaVectors(t *testing.T) {
	for _, v := range librdkafkaKeys {
		for _, n := range []int{7, 17} {
			if v.key != "" { // consistent_random places an empty key at random
				require.Equal(t, int(v.crc32%uint32(n)), Partitioner(ConsistentRandom).Partition([]byte(v.key), n), "consistent_random %q", v.key)
			}
			require.Equal(t, int(v.murmur2%uint32(n)), Partitioner(Murmur2).Partition([]byte(v.key), n), "murmur2 %q", v.key)
			require.Equal(t, int(v.fnv1a%uint32(n)), Partitioner(FNV1a).Partition([]byte(v.key), n), "fnv1a %q", v.key)
		}
	}
	seen := map[int]bool{}
	for range 200 {
		p := Partitioner(ConsistentRandom).Partition(nil, 4)
		require.True(t, p >= 0 && p < 4)
		seen[p] = true
	}
	require.Greater(t, len(seen), 1, "an empty key is placed at random under consistent_random")
}

func TestCandidates(t *testing.T) {
	// "hejsan" among 7 (the vectors above): murmur2 0x5ec19395%7 = 6,
	// CRC32 0xd077037e%7 = 3, FNV-1a 0x17b1e27a%7 = 3: two candidates,
	// the second shared.
	got := Candidates(Auto, []byte("hejsan"), 7)
	require.Equal(t, []Candidate{
		{Partition: 6, By: []Partitioner{Murmur2}},
		{Partition: 3, By: []Partitioner{ConsistentRandom, FNV1a}},
	}, got)
	require.Equal(t, "consistent_random, fnv1a", got[1].Names())

	require.Equal(t, []Candidate{{Partition: 3, By: []Partitioner{FNV1a}}}, Candidates(FNV1a, []byte("hejsan"), 7))
	require.Equal(t, []Candidate{{Partition: 0, By: []Partitioner{Murmur2, ConsistentRandom, FNV1a}}}, Candidates(Auto, []byte("k"), 1))

	// An empty key has no consistent_random partition.
	for _, c := range Candidates(Auto, nil, 17) {
		require.NotContains(t, c.By, Partitioner(ConsistentRandom))
	}
	require.Empty(t, Candidates(ConsistentRandom, nil, 17))
}
