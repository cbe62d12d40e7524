// Package topic owns the one rule for legal Kafka topic names, which the
// envelope applies to target topics it builds or parses and the service
// to the topics it is given on its command line.
package topic

// MaxLen is the longest topic name Kafka accepts.
const MaxLen = 249

// Legal reports whether Kafka accepts name as a topic name: 1 to MaxLen
// characters among ASCII letters, digits, '.', '_' and '-', and neither
// "." nor "..". It takes a string or the bytes of a header value, without
// converting (and so without allocating).
func Legal[T ~string | ~[]byte](name T) bool {
	if len(name) == 0 || len(name) > MaxLen || string(name) == "." || string(name) == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}
