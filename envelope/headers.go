package envelope

import "github.com/twmb/franz-go/pkg/kgo"

// Header names of SPEC sections 3 and 10, and their fixed values. They are
// exact: Karafka producers and state readers use the same names.
const (
	HeaderSchemaVersion            = "schedule_schema_version"
	HeaderSourceType               = "schedule_source_type"
	HeaderTargetEpoch              = "schedule_target_epoch"
	HeaderTargetEpochMs            = "schedule_target_epoch_ms"
	HeaderTargetTopic              = "schedule_target_topic"
	HeaderTargetPartition          = "schedule_target_partition"
	HeaderTargetKey                = "schedule_target_key"
	HeaderTargetPartitionKey       = "schedule_target_partition_key"
	HeaderSourceTopic              = "schedule_source_topic"
	HeaderSourcePartition          = "schedule_source_partition"
	HeaderSourceOffset             = "schedule_source_offset"
	HeaderSourceKey                = "schedule_source_key"
	HeaderLogEvent                 = "schedule_log_event"
	HeaderDispatchedAt             = "schedule_dispatched_at"
	HeaderLatenessMs               = "schedule_lateness_ms"
	HeaderError                    = "schedule_error"
	HeaderErrorMessage             = "schedule_error_message"
	HeaderPayloadOmitted           = "schedule_payload_omitted"
	HeaderCopyOf                   = "schedule_copy_of"
	HeaderZlib                     = "zlib"
	HeaderCron                     = "schedule_cron"
	HeaderTimezone                 = "schedule_timezone"
	HeaderUntil                    = "schedule_until"
	HeaderMaxFires                 = "schedule_max_fires"
	HeaderFireCount                = "schedule_fire_count"
	HeaderMissed                   = "schedule_missed"
	HeaderFireTime                 = "schedule_fire_time"
	HeaderSkipped                  = "schedule_skipped"
	SchemaVersion                  = "1.0.0"
	SchemaMajor                    = 1
	SourceSchedule                 = "schedule"
	SourceCancel                   = "cancel"
	SourceTombstone                = "tombstone"
	LogDispatched                  = "dispatched"
	LogRejected                    = "rejected"
	LogSkipped                     = "skipped"
	MissedOne                      = "one"
	MissedSkip                     = "skip"
	DefaultTopic                   = "scheduled_messages"
	DefaultStatesPostfix           = "_states"
	DefaultLogsPostfix             = "_logs"
	maxFutureSeconds         int64 = 100 * 36525 * 864 // 100 Julian years
)

func isControl(name string) bool {
	switch name {
	case HeaderSchemaVersion, HeaderSourceType, HeaderTargetEpoch, HeaderTargetEpochMs,
		HeaderTargetTopic, HeaderTargetPartition, HeaderTargetKey, HeaderTargetPartitionKey,
		HeaderCron, HeaderTimezone, HeaderUntil, HeaderMaxFires, HeaderFireCount, HeaderMissed:
		return true
	}
	return false
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
