package envelope

import (
	"bytes"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// splitHeaders turns fuzz input into headers: lines of "name=value".
func splitHeaders(b []byte) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		name, value, _ := bytes.Cut(line, []byte{'='})
		out = append(out, kgo.RecordHeader{Key: string(name), Value: value})
	}
	return out
}

// FuzzParse checks that no record crashes Parse, that every error carries a
// known code, and that a parsed schedule rebuilds to the same envelope,
// recurrence included: the builder writes headers Parse reads back to the
// same values.
func FuzzParse(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_epoch=1795442700\nschedule_target_topic=orders"))
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_epoch=1795442700\nschedule_target_epoch_ms=1795442700999\nschedule_target_topic=orders\nschedule_target_partition=3\nschedule_target_key=tk\nschedule_target_partition_key=pk\nx=y"))
	f.Add([]byte("k"), []byte(nil), true, []byte("schedule_source_type=tombstone\nschedule_source_offset=12"))
	f.Add([]byte(""), []byte("v"), false, []byte("schedule_schema_version=2.0.0"))
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_target_epoch=-9223372036854775808\nschedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_topic=t"))
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_epoch=1795442700\nschedule_target_topic=orders\nschedule_cron=0 9 * * MON-FRI\nschedule_timezone=Europe/Paris\nschedule_until=1800000000\nschedule_max_fires=10\nschedule_fire_count=2\nschedule_missed=skip"))
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_epoch=1795442700\nschedule_target_topic=orders\nschedule_cron=@every 1500ms\nschedule_missed=one"))
	f.Add([]byte("k"), []byte("v"), false, []byte("schedule_schema_version=1.0.0\nschedule_source_type=schedule\nschedule_target_epoch=1795442700\nschedule_target_topic=orders\nschedule_cron=TZ=\nschedule_max_fires=0"))
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, key, value []byte, null bool, headers []byte) {
		if null {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		rec := &kgo.Record{Key: key, Value: value, Headers: splitHeaders(headers)}
		env, err := Parse(rec, now)
		if err != nil {
			switch e := err.(type) {
			case *Error:
				known := false
				for _, c := range Codes {
					known = known || c == e.Code
				}
				if !known || e.Msg == "" {
					t.Fatalf("error without a known code and message: %#v", e)
				}
			case *VersionError:
			default:
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if env.Kind != KindSchedule {
			if value != nil {
				t.Fatalf("a record with a value parsed as %v", env.Kind)
			}
			return
		}
		opts := []ScheduleOpt{WithKey(string(env.Key))}
		if env.HasTargetKey {
			opts = append(opts, WithTargetKey(string(env.TargetKey)))
		}
		if env.TargetPartition >= 0 {
			opts = append(opts, WithTargetPartition(env.TargetPartition))
		}
		if env.HasPartitionKey {
			opts = append(opts, WithPartitionKey(string(env.PartitionKey)))
		}
		// schedule is what Schedule and Recurring share: Recurring would
		// move the due time to the expression's next firing.
		rebuilt, err := schedule(env.TargetTopic, env.Due(), env.Value, env.Recur, opts)
		if err != nil {
			t.Fatalf("rebuilding a parsed schedule: %v", err)
		}
		again, err := Parse(rebuilt, now)
		if err != nil {
			t.Fatalf("parsing a rebuilt schedule: %v", err)
		}
		if again.DueMs != env.DueMs || again.TargetTopic != env.TargetTopic ||
			again.TargetPartition != env.TargetPartition || !bytes.Equal(again.Key, env.Key) ||
			again.HasTargetKey != env.HasTargetKey || !bytes.Equal(again.TargetKey, env.TargetKey) ||
			again.HasPartitionKey != env.HasPartitionKey || !bytes.Equal(again.PartitionKey, env.PartitionKey) ||
			!bytes.Equal(again.Value, env.Value) || !reflect.DeepEqual(again.Recur, env.Recur) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, again)
		}
	})
}

// FuzzParseDecimal: the epoch parser agrees with strconv.ParseInt.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"1795442700", "-1500", "+7", "9223372036854775808", "1.5", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, err := strconv.ParseInt(string(b), 10, 64)
		got, ok := parseDecimal(b)
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("parseDecimal(%q) = %d, %v; strconv: %d, %v", b, got, ok, want, err)
		}
	})
}
