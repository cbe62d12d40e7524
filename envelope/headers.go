package envelope

import (
	"github.com/twmb/franz-go/pkg/kgo"

	topicname "github.com/scheduler-dev/scheduler/internal/topic"
)

// Header names of SPEC sections 3 and 10. They are exact: Karafka
// producers and state readers use the same names. Any header not named
// here is the user's, delivered unchanged.
const (
	// Set by a producer, through Schedule's options or Recurring (3.1, 10).
	HeaderSchemaVersion      = "schedule_schema_version"
	HeaderSourceType         = "schedule_source_type"
	HeaderTargetEpoch        = "schedule_target_epoch"
	HeaderTargetEpochMs      = "schedule_target_epoch_ms"
	HeaderTargetTopic        = "schedule_target_topic"
	HeaderTargetPartition    = "schedule_target_partition"
	HeaderTargetKey          = "schedule_target_key"
	HeaderTargetPartitionKey = "schedule_target_partition_key"
	HeaderCron               = "schedule_cron"
	HeaderTimezone           = "schedule_timezone"
	HeaderUntil              = "schedule_until"
	HeaderMaxFires           = "schedule_max_fires"
	HeaderFireCount          = "schedule_fire_count"
	HeaderMissed             = "schedule_missed"

	// Written by the service on the records it writes (3.3 to 3.6, 10).
	HeaderSourceTopic     = "schedule_source_topic"
	HeaderSourcePartition = "schedule_source_partition"
	HeaderSourceOffset    = "schedule_source_offset"
	HeaderSourceKey       = "schedule_source_key"
	HeaderCopyOf          = "schedule_copy_of"
	HeaderLogEvent        = "schedule_log_event"
	HeaderDispatchedAt    = "schedule_dispatched_at"
	HeaderLatenessMs      = "schedule_lateness_ms"
	HeaderError           = "schedule_error"
	HeaderErrorMessage    = "schedule_error_message"
	HeaderPayloadOmitted  = "schedule_payload_omitted"
	HeaderFireTime        = "schedule_fire_time"
	HeaderSkipped         = "schedule_skipped"
	HeaderZlib            = "zlib"
)

// Fixed header values, and the topic names of SPEC section 2.
const (
	SchemaVersion        = "1.0.0"
	SchemaMajor          = 1
	SourceSchedule       = "schedule"  // schedule_source_type of a schedule
	SourceCancel         = "cancel"    // schedule_source_type of a producer's cancel
	SourceTombstone      = "tombstone" // schedule_source_type of the service's tombstone
	LogDispatched        = "dispatched"
	LogRejected          = "rejected"
	LogSkipped           = "skipped"
	MissedOne            = "one"
	MissedSkip           = "skip"
	DefaultTopic         = "scheduled_messages"
	DefaultStatesPostfix = topicname.DefaultStatesPostfix
	DefaultLogsPostfix   = topicname.DefaultLogsPostfix
)

// maxFutureSeconds bounds a due time: further ahead is bad_epoch (SPEC 5).
const maxFutureSeconds int64 = 100 * 36525 * 864 // 100 Julian years

// The positions of the headers in headerNames, the one list of them:
// first the control headers a producer sets through this package and
// never with WithHeader, then the two more that Parse reads, then those
// the service only writes.
const (
	iSchemaVersion = iota
	iSourceType
	iTargetEpoch
	iTargetEpochMs
	iTargetTopic
	iTargetPartition
	iTargetKey
	iTargetPartitionKey
	iCron
	iTimezone
	iUntil
	iMaxFires
	iFireCount
	iMissed
	iSourceOffset // names the version a tombstone removes
	iCopyOf       // marks the service's re-append of a version
	iSourceTopic
	iSourcePartition
	iSourceKey
	iLogEvent
	iDispatchedAt
	iLatenessMs
	iError
	iErrorMessage
	iPayloadOmitted
	iFireTime
	iSkipped
	iZlib
	nHeaders

	nSet  = iMissed + 1 // headerNames[:nSet] are set by a producer, through this package
	nRead = iCopyOf + 1 // headerNames[:nRead] are read by Parse
)

var headerNames = [nHeaders]string{
	iSchemaVersion:      HeaderSchemaVersion,
	iSourceType:         HeaderSourceType,
	iTargetEpoch:        HeaderTargetEpoch,
	iTargetEpochMs:      HeaderTargetEpochMs,
	iTargetTopic:        HeaderTargetTopic,
	iTargetPartition:    HeaderTargetPartition,
	iTargetKey:          HeaderTargetKey,
	iTargetPartitionKey: HeaderTargetPartitionKey,
	iCron:               HeaderCron,
	iTimezone:           HeaderTimezone,
	iUntil:              HeaderUntil,
	iMaxFires:           HeaderMaxFires,
	iFireCount:          HeaderFireCount,
	iMissed:             HeaderMissed,
	iSourceOffset:       HeaderSourceOffset,
	iCopyOf:             HeaderCopyOf,
	iSourceTopic:        HeaderSourceTopic,
	iSourcePartition:    HeaderSourcePartition,
	iSourceKey:          HeaderSourceKey,
	iLogEvent:           HeaderLogEvent,
	iDispatchedAt:       HeaderDispatchedAt,
	iLatenessMs:         HeaderLatenessMs,
	iError:              HeaderError,
	iErrorMessage:       HeaderErrorMessage,
	iPayloadOmitted:     HeaderPayloadOmitted,
	iFireTime:           HeaderFireTime,
	iSkipped:            HeaderSkipped,
	iZlib:               HeaderZlib,
}

// HeaderNames returns the name of every header SPEC sections 3 and 10
// define, at the positions HeaderIndex gives them. Any other header is the
// user's.
func HeaderNames() []string {
	names := headerNames
	return names[:]
}

// HeaderIndex returns the position of name in HeaderNames, or -1 when it
// is a user's header. It allocates nothing, so that a reader can code the
// contract's names of every header it reads as a small number.
//
// Parse asks once per header of every record, so it is a table lookup:
// headerHash places every name in its own slot of headerSlots, and the
// one name in the slot is compared. A string switch compares by length,
// then up to five times by value.
func HeaderIndex(name string) int {
	if len(name) < 2 {
		return -1
	}
	i := headerSlots[headerHash(name)]
	if i < 0 || headerNames[i] != name {
		return -1
	}
	return int(i)
}

// headerHash mixes a name's length and two of its bytes (every name but
// zlib starts with "schedule_", so the first bytes tell nothing). The
// multipliers were searched for: no two names of headerNames share a
// slot, which headerSlots checks when the package starts. len(name) >= 2.
func headerHash(name string) uint {
	n := len(name)
	return (uint(n)*20 + uint(name[n-2])*48 + uint(name[n/2])) % headerSlotCount
}

const headerSlotCount = 64

// headerSlots holds, by headerHash, the position of each name in
// headerNames; -1 in a slot no name hashes to.
var headerSlots = func() (s [headerSlotCount]int8) {
	for i := range s {
		s[i] = -1
	}
	for i, name := range headerNames {
		h := headerHash(name)
		if s[h] >= 0 {
			panic("envelope: headers " + headerNames[s[h]] + " and " + name + " share a slot of HeaderIndex's table; search headerHash for other multipliers")
		}
		s[h] = int8(i)
	}
	return s
}()

// isControl reports whether name is a header this package sets and
// WithHeader therefore refuses.
func isControl(name string) bool {
	i := HeaderIndex(name)
	return i >= 0 && i < nSet
}

// Header returns the value of the last header named name, and whether there
// was one.
func Header(headers []kgo.RecordHeader, name string) ([]byte, bool) {
	for i := len(headers) - 1; i >= 0; i-- {
		if headers[i].Key == name {
			return headers[i].Value, true
		}
	}
	return nil, false
}
