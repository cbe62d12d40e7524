package envelope

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	topicname "github.com/scheduler-dev/scheduler/internal/topic"
)

// Kind tells what a record of the schedules topic asks for.
type Kind uint8

const (
	// KindSchedule delivers Value at Due to TargetTopic.
	KindSchedule Kind = iota + 1
	// KindCancel removes every version of the key (any null-value record).
	KindCancel
	// KindTombstone is the service's own tombstone: it removes only the
	// version written at offset Names (SPEC 3.4).
	KindTombstone
)

func (k Kind) String() string {
	switch k {
	case KindSchedule:
		return "schedule"
	case KindCancel:
		return "cancel"
	case KindTombstone:
		return "tombstone"
	}
	return "unknown"
}

// Envelope is a parsed record of the schedules topic. Its slices alias the
// record it was parsed from.
type Envelope struct {
	Kind Kind
	Key  []byte

	// Schedule only.
	Value           []byte
	DueMs           int64 // due time, Unix milliseconds
	TargetTopic     string
	TargetPartition int32 // -1 when not set
	TargetKey       []byte
	HasTargetKey    bool
	PartitionKey    []byte
	HasPartitionKey bool

	// Tombstone only: the offset of the version it removes.
	Names int64

	// Schedule only: the offset of the version this record re-appends, or
	// -1 when it is not a copy written by the service (SPEC 3.4).
	CopyOf int64

	// Schedule only: what makes it recur (SPEC 10), or nil for a schedule
	// without schedule_cron, which is sent once.
	Recur *Recurrence
}

// Recurrence is what the headers of SPEC 10 say about a recurring schedule.
// Parse fills it from a record with schedule_cron; a producer passes one to
// Recurring. Zero values mean the header is absent, and take its default.
type Recurrence struct {
	// Cron is the expression (schedule_cron): five fields, six with
	// leading seconds, or a descriptor such as @daily or @every 30s.
	Cron string
	// Timezone is the IANA zone Cron is read in (schedule_timezone);
	// empty means UTC.
	Timezone string
	// Until is the last instant a firing may happen (schedule_until, whole
	// seconds); zero means no end.
	Until time.Time
	// MaxFires ends the recurrence after that many firings
	// (schedule_max_fires); 0 means no limit.
	MaxFires int64
	// FireCount is how many firings happened before this version
	// (schedule_fire_count, written by the service).
	FireCount int64
	// Missed is MissedOne or MissedSkip (schedule_missed); empty means
	// MissedOne.
	Missed string
}

// Due returns the due time.
func (e *Envelope) Due() time.Time { return time.UnixMilli(e.DueMs).UTC() }

// control collects the control headers of one record, by their position
// in headerNames. A control header may repeat with the same value (some
// producers copy headers twice); with different values the record is
// ambiguous and rejected.
type control struct {
	val      [nRead][]byte
	has      uint32 // bit i: headerNames[i] is present
	conflict string
}

func (c *control) read(headers []kgo.RecordHeader) {
	for i := range headers {
		h := &headers[i]
		n := HeaderIndex(h.Key)
		if n < 0 || n >= nRead {
			continue
		}
		if bit := uint32(1) << n; c.has&bit == 0 {
			c.has |= bit
			c.val[n] = h.Value
		} else if !bytes.Equal(c.val[n], h.Value) && c.conflict == "" {
			c.conflict = h.Key
		}
	}
}

// get returns the value of headerNames[n] and whether the record has it.
func (c *control) get(n int) ([]byte, bool) { return c.val[n], c.has&(1<<n) != 0 }

// Parse reads one record of the schedules topic. now bounds how far ahead a
// due time may lie (SPEC 5: more than 100 years ahead is bad_epoch).
//
// The error is an *Error for a schedule that must be rejected, or a
// *VersionError for a record of a newer major schema version. A record with a
// null value is always a cancel or a tombstone, never an error, unless it has
// no key (there is nothing to cancel) or a newer major version.
func Parse(r *kgo.Record, now time.Time) (Envelope, error) {
	var c control
	c.read(r.Headers)

	version, hasVersion := c.get(iSchemaVersion)
	if hasVersion {
		if major, ok := parseMajor(version); ok && major > SchemaMajor {
			return Envelope{}, &VersionError{Version: printable(version)}
		}
	}
	source, hasSource := c.get(iSourceType)

	if r.Value == nil {
		if r.Key == nil {
			return Envelope{}, errorf(CodeMissingKey, "null-value record without a key cancels nothing")
		}
		env := Envelope{Kind: KindCancel, Key: r.Key, Names: -1, TargetPartition: -1, CopyOf: -1}
		if offset, ok := c.get(iSourceOffset); ok && hasSource && string(source) == SourceTombstone {
			if off, err := strconv.ParseInt(string(offset), 10, 64); err == nil && off >= 0 {
				env.Kind = KindTombstone
				env.Names = off
			}
		}
		return env, nil
	}

	if len(r.Key) == 0 {
		return Envelope{}, errorf(CodeMissingKey, "a schedule needs a non-empty key")
	}
	if c.conflict != "" {
		return Envelope{}, errorf(CodeMissingHeader, "header %s appears more than once with different values; it must appear once", c.conflict)
	}
	if !hasVersion {
		return Envelope{}, errorf(CodeMissingHeader, "missing header %s", HeaderSchemaVersion)
	}
	if major, ok := parseMajor(version); !ok || major < SchemaMajor {
		return Envelope{}, errorf(CodeMissingHeader, "header %s is %q; want %s", HeaderSchemaVersion, printable(version), SchemaVersion)
	}
	if !hasSource {
		return Envelope{}, errorf(CodeMissingHeader, "missing header %s", HeaderSourceType)
	}
	if string(source) != SourceSchedule {
		return Envelope{}, errorf(CodeUnknownSourceType, "header %s is %q; a record with a value must be %q", HeaderSourceType, printable(source), SourceSchedule)
	}
	epoch, ok := c.get(iTargetEpoch)
	if !ok {
		return Envelope{}, errorf(CodeMissingHeader, "missing header %s", HeaderTargetEpoch)
	}
	topic, ok := c.get(iTargetTopic)
	if !ok || len(topic) == 0 {
		return Envelope{}, errorf(CodeMissingHeader, "missing header %s", HeaderTargetTopic)
	}

	env := Envelope{Kind: KindSchedule, Key: r.Key, Value: r.Value, TargetPartition: -1, Names: -1, CopyOf: -1}
	if copyOf, ok := c.get(iCopyOf); ok {
		if off, err := strconv.ParseInt(string(copyOf), 10, 64); err == nil && off >= 0 {
			env.CopyOf = off
		}
	}

	epochMs, hasMs := c.get(iTargetEpochMs)
	due, err := parseDue(epoch, epochMs, hasMs, now)
	if err != nil {
		return Envelope{}, err
	}
	env.DueMs = due

	if !topicname.Legal(topic) {
		return Envelope{}, errorf(CodeTargetUnavailable, "target topic %q is not a legal Kafka topic name", printable(topic))
	}
	env.TargetTopic = internTopic(topic)

	if partition, ok := c.get(iTargetPartition); ok {
		p, err := strconv.ParseInt(string(partition), 10, 32)
		if err != nil || p < 0 {
			return Envelope{}, errorf(CodeBadPartition, "header %s is %q; want a partition number >= 0", HeaderTargetPartition, printable(partition))
		}
		env.TargetPartition = int32(p)
	}
	env.TargetKey, env.HasTargetKey = c.get(iTargetKey)
	env.PartitionKey, env.HasPartitionKey = c.get(iTargetPartitionKey)
	if _, ok := c.get(iCron); ok {
		rec, err := parseRecurrence(&c, now)
		if err != nil {
			return Envelope{}, err
		}
		env.Recur = rec
	}
	return env, nil
}

// parseRecurrence reads the headers of SPEC 10. The recurrence headers
// other than schedule_cron mean nothing without it and are then left to
// the user, as before SPEC 10.
//
// The minimum interval between firings is the service's setting, not the
// record's, so it is checked by the service, not here.
func parseRecurrence(c *control, now time.Time) (*Recurrence, error) {
	cronExpr, _ := c.get(iCron)
	zone, _ := c.get(iTimezone)
	// The strings of the expression parsed lately (check parses it
	// again from them, from the same cache): no copy per envelope read.
	p := parsedExpr(cronExpr, zone)
	r := &Recurrence{Cron: p.cron, Timezone: p.zone}
	if until, ok := c.get(iUntil); ok {
		sec, ok := parseDecimal(until)
		switch {
		case !ok:
			return nil, errorf(CodeBadEpoch, "header %s is %q; want Unix seconds as a decimal integer", HeaderUntil, printable(until))
		case sec < 0:
			return nil, errorf(CodeBadEpoch, "header %s is %d, before 1970", HeaderUntil, sec)
		case sec > now.Unix()+maxFutureSeconds:
			return nil, errorf(CodeBadEpoch, "header %s is %d, more than 100 years ahead; is it milliseconds instead of seconds?", HeaderUntil, sec)
		}
		r.Until = time.Unix(sec, 0).UTC()
	}
	if maxFires, ok := c.get(iMaxFires); ok {
		n, ok := parseDecimal(maxFires)
		if !ok || n <= 0 {
			return nil, errorf(CodeBadCron, "header %s is %q; want a positive decimal integer", HeaderMaxFires, printable(maxFires))
		}
		r.MaxFires = n
	}
	if fireCount, ok := c.get(iFireCount); ok {
		n, ok := parseDecimal(fireCount)
		if !ok || n < 0 {
			return nil, errorf(CodeBadCron, "header %s is %q; want a decimal integer >= 0", HeaderFireCount, printable(fireCount))
		}
		r.FireCount = n
	}
	if missed, ok := c.get(iMissed); ok {
		switch string(missed) {
		case MissedOne:
			r.Missed = MissedOne
		case MissedSkip:
			r.Missed = MissedSkip
		default:
			return nil, errorf(CodeBadCron, "header %s is %q; want %q or %q", HeaderMissed, printable(missed), MissedOne, MissedSkip)
		}
	}
	if _, err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// parseDue returns the due time in Unix milliseconds.
func parseDue(epoch, epochMs []byte, hasMs bool, now time.Time) (int64, error) {
	sec, ok := parseDecimal(epoch)
	if !ok {
		return 0, errorf(CodeBadEpoch, "header %s is %q; want Unix seconds as a decimal integer", HeaderTargetEpoch, printable(epoch))
	}
	if sec > now.Unix()+maxFutureSeconds {
		return 0, errorf(CodeBadEpoch, "header %s is %d, more than 100 years ahead; is it milliseconds instead of seconds?", HeaderTargetEpoch, sec)
	}
	const minSec = -(1 << 63) / 1000
	if sec < minSec {
		return 0, errorf(CodeBadEpoch, "header %s is %d, out of range", HeaderTargetEpoch, sec)
	}
	if !hasMs {
		return sec * 1000, nil
	}
	ms, ok := parseDecimal(epochMs)
	if !ok {
		return 0, errorf(CodeBadEpoch, "header %s is %q; want Unix milliseconds as a decimal integer", HeaderTargetEpochMs, printable(epochMs))
	}
	if floorDiv(ms, 1000) != sec {
		return 0, errorf(CodeBadEpoch, "header %s is %d, outside the second %d named by %s", HeaderTargetEpochMs, ms, sec, HeaderTargetEpoch)
	}
	return ms, nil
}

// topics remembers recent target topic names, so that parsing a schedule
// does not allocate its topic's name again: a partition holds schedules
// for a handful of topics, read a million times over. Lock-free and
// bounded: a slot is overwritten by whichever topic hashes to it last.
var topics [256]atomic.Pointer[string]

func internTopic(b []byte) string {
	slot := &topics[fnv1a(fnvOffset, b)%uint32(len(topics))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// fnvOffset and fnv1a are 32-bit FNV-1a, over a string or bytes alike
// without converting one to the other: the slot of a cache above (topics,
// exprs). fnv1a continues the hash h over b.
const fnvOffset = 2166136261

func fnv1a[T string | []byte](h uint32, b T) uint32 {
	for i := 0; i < len(b); i++ {
		h = (h ^ uint32(b[i])) * 16777619
	}
	return h
}

// parseDecimal reads a decimal int64 as strconv.ParseInt(s, 10, 64) does,
// without converting the bytes to a string: that conversion allocates
// (the string escapes into ParseInt's error), and every schedule read has
// an epoch. Up to 18 digits cannot overflow; longer values go to strconv.
func parseDecimal(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		v, err := strconv.ParseInt(string(b), 10, 64)
		return v, err == nil
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if b[0] == '-' {
		n = -n
	}
	return n, true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// parseMajor reads the major version of "MAJOR.MINOR.PATCH".
func parseMajor(v []byte) (int, bool) {
	end := bytes.IndexByte(v, '.')
	if end < 0 {
		end = len(v)
	}
	if end == 0 || end > 9 {
		return 0, false
	}
	n := 0
	for _, b := range v[:end] {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int(b-'0')
	}
	return n, true
}

// printable shortens a header value for an error message, which quotes it
// with %q: header values come from producers and may be binary or huge.
func printable(v []byte) string {
	const max = 64
	if len(v) > max {
		return string(v[:max]) + "..."
	}
	return string(v)
}
