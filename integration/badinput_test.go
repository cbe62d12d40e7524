package integration

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/state"
)

// logBuffer collects the service's JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines with the given message.
func (l *logBuffer) lines(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func withLogs(cfg service.Config) (service.Config, *logBuffer) {
	lb := &logBuffer{}
	l := zerolog.New(lb).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	cfg.Logger = &l
	return cfg, lb
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}

func hdr(kv ...string) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return out
}

// TestRejectsEveryCode: each invalid envelope is rejected with its stable
// code, logged once with its partition and offset, written to the logs topic
// with its original payload and headers, and tombstoned; the valid schedule
// written after each is still sent; nothing blocks.
func TestRejectsEveryCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 3)
		_, err := b.adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr("2000")}, "orders-small")
		require.NoError(t, err)
		b.topic(schedTopic, 1) // one partition: every record is behind every other
		cfg, logs := withLogs(b.config("a"))
		cfg.AllowTarget = []string{"orders*", "missing*", "bad*", "__*", schedTopic + "*"}
		cfg.TargetWait = 5 * time.Second
		_, stop := b.start(cfg)
		defer stop()
		synctest.Wait()

		now := b.now()
		epoch := strconv.FormatInt(now.Unix(), 10)
		ok := func(extra ...string) []kgo.RecordHeader {
			return hdr(append([]string{
				"schedule_schema_version", "1.0.0", "schedule_source_type", "schedule",
				"schedule_target_epoch", epoch, "schedule_target_topic", "orders",
			}, extra...)...)
		}
		set := func(h []kgo.RecordHeader, name, value string) []kgo.RecordHeader {
			out := append([]kgo.RecordHeader(nil), h...)
			for i := range out {
				if out[i].Key == name {
					out[i].Value = []byte(value)
					return out
				}
			}
			return append(out, kgo.RecordHeader{Key: name, Value: []byte(value)})
		}
		drop := func(h []kgo.RecordHeader, name string) []kgo.RecordHeader {
			var out []kgo.RecordHeader
			for _, x := range h {
				if x.Key != name {
					out = append(out, x)
				}
			}
			return out
		}
		type bad struct {
			name    string
			key     []byte
			value   []byte
			headers []kgo.RecordHeader
			code    envelope.Code
		}
		huge := strings.Repeat("h", 100_000)
		cases := []bad{
			{"empty key", []byte{}, []byte("p"), ok(), envelope.CodeMissingKey},
			{"plain record", []byte("k"), []byte("just a message"), nil, envelope.CodeMissingHeader},
			{"no version", []byte("k"), []byte("p"), drop(ok(), "schedule_schema_version"), envelope.CodeMissingHeader},
			{"no target topic", []byte("k"), []byte("p"), drop(ok(), "schedule_target_topic"), envelope.CodeMissingHeader},
			{"conflicting duplicate", []byte("k"), []byte("p"), append(ok(), hdr("schedule_target_epoch", "1")...), envelope.CodeMissingHeader},
			{"epoch not a number", []byte("k"), []byte("p"), set(ok(), "schedule_target_epoch", "tomorrow"), envelope.CodeBadEpoch},
			{"epoch in ms", []byte("k"), []byte("p"), set(ok(), "schedule_target_epoch", strconv.FormatInt(now.UnixMilli(), 10)), envelope.CodeBadEpoch},
			{"epoch overflow", []byte("k"), []byte("p"), set(ok(), "schedule_target_epoch", "99999999999999999999"), envelope.CodeBadEpoch},
			{"binary epoch", []byte("k"), []byte("p"), set(ok(), "schedule_target_epoch", "\x00\xff\xfe"), envelope.CodeBadEpoch},
			{"negative partition", []byte("k"), []byte("p"), ok("schedule_target_partition", "-1"), envelope.CodeBadPartition},
			{"partition not a number", []byte("k"), []byte("p"), ok("schedule_target_partition", "two"), envelope.CodeBadPartition},
			{"partition beyond count", []byte("k"), []byte("p"), ok("schedule_target_partition", "7"), envelope.CodeBadPartition},
			{"cancel with a value", []byte("k"), []byte("p"), set(ok(), "schedule_source_type", "cancel"), envelope.CodeUnknownSourceType},
			{"unknown type", []byte("k"), []byte("p"), set(ok(), "schedule_source_type", "later"), envelope.CodeUnknownSourceType},
			{"outside allow-list", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", "payments"), envelope.CodeTargetNotAllowed},
			{"own logs topic", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", schedTopic+"_logs"), envelope.CodeTargetNotAllowed},
			{"own schedules topic", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", schedTopic), envelope.CodeTargetNotAllowed},
			{"internal topic", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", "__consumer_offsets"), envelope.CodeTargetNotAllowed},
			{"missing topic", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", "missing-topic"), envelope.CodeTargetUnavailable},
			{"illegal topic name", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", "bad topic!"), envelope.CodeTargetUnavailable},
			// Random, so compression cannot shrink it below the limit.
			{"too large for its target", []byte("k"), random(5000), set(ok(), "schedule_target_topic", "orders-small"), envelope.CodeTooLarge},
			{"huge control header", []byte("k"), []byte("p"), set(ok(), "schedule_target_topic", huge), envelope.CodeTargetUnavailable},
		}
		var recs []*kgo.Record
		for i, c := range cases {
			key := c.key
			if len(key) > 0 {
				key = []byte("bad-" + strconv.Itoa(i))
			}
			recs = append(recs,
				&kgo.Record{Topic: schedTopic, Key: key, Value: c.value, Headers: c.headers},
				b.sched("orders", now, "good-"+strconv.Itoa(i), envelope.WithKey("good-"+strconv.Itoa(i))),
			)
		}
		// Hostile records that are still valid schedules: they go out.
		recs = append(recs,
			&kgo.Record{Topic: schedTopic, Key: []byte("binary-user-header"), Value: []byte("good-binary"),
				Headers: ok("\xff\x00", "\x00\x01\x02", "", "")},
			&kgo.Record{Topic: schedTopic, Key: []byte("huge-user-header"), Value: []byte("good-huge"),
				Headers: ok("big", huge)},
			&kgo.Record{Topic: schedTopic, Key: []byte("identical-duplicates"), Value: []byte("good-dup"),
				Headers: append(ok(), hdr("schedule_target_epoch", epoch, "schedule_target_topic", "orders")...)},
		)
		b.produce(recs...)

		b.sleepUntil(now.Add(10 * time.Second)) // past the wait for the missing topic
		targets := b.consume("orders")
		defer targets.Close()
		var good []string
		for _, r := range drain(targets) {
			good = append(good, string(r.Value))
		}
		require.Len(t, good, len(cases)+3, "every valid schedule behind a bad one went out")

		audit := b.consume(schedTopic + "_logs")
		defer audit.Close()
		rejected := map[int64]*kgo.Record{}
		for _, r := range drain(audit) {
			if ev, _ := envelope.Header(r.Headers, envelope.HeaderLogEvent); string(ev) == envelope.LogRejected {
				rejected[int64(len(rejected))] = r
			}
		}
		require.Len(t, rejected, len(cases))
		sched := b.consume(schedTopic)
		defer sched.Close()
		tombs := map[int64]bool{}
		for _, r := range drain(sched) {
			if r.Value == nil {
				off, _ := envelope.Header(r.Headers, envelope.HeaderSourceOffset)
				n, _ := strconv.ParseInt(string(off), 10, 64)
				tombs[n] = true
			}
		}
		lines := logs.lines("schedule rejected")
		for i, c := range cases {
			src := recs[2*i]
			var found *kgo.Record
			for _, r := range rejected {
				if bytes.Equal(r.Key, src.Key) && bytes.Equal(r.Value, src.Value) {
					found = r
				}
			}
			require.NotNil(t, found, "%s: a rejected audit record with the original payload", c.name)
			code, _ := envelope.Header(found.Headers, envelope.HeaderError)
			require.Equal(t, string(c.code), string(code), c.name)
			msg, _ := envelope.Header(found.Headers, envelope.HeaderErrorMessage)
			require.NotEmpty(t, msg, c.name)
			if len(src.Headers) > 0 {
				require.Equal(t, src.Headers, found.Headers[:len(src.Headers)], "%s: the original headers", c.name)
			}
			require.True(t, tombs[src.Offset], "%s: tombstoned", c.name)
			n := 0
			for _, l := range lines {
				if l["offset"] == float64(src.Offset) && l["partition"] == float64(src.Partition) && l["code"] == string(c.code) {
					n++
				}
			}
			require.Equal(t, 1, n, "%s: logged once with its partition and offset", c.name)
		}
	})
}

// TestNullKeyIsRejectedWithoutTombstone: a record without a key cannot be
// tombstoned; it is still rejected and audited, and does not block.
func TestNullKeyIsRejectedWithoutTombstone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 1)
		_, stop := b.start(b.config("a"))
		defer stop()
		synctest.Wait()
		now := b.now()
		b.produce(&kgo.Record{Topic: schedTopic, Value: []byte("keyless")}, b.sched("orders", now, "good"))
		b.sleepUntil(now.Add(time.Second))
		targets := b.consume("orders")
		defer targets.Close()
		require.Equal(t, []string{"good"}, values(drain(targets)))
		audit := b.consume(schedTopic + "_logs")
		defer audit.Close()
		var codes []string
		for _, r := range drain(audit) {
			c, _ := envelope.Header(r.Headers, envelope.HeaderError)
			codes = append(codes, string(c))
		}
		require.Contains(t, codes, string(envelope.CodeMissingKey))
	})
}

// TestNewerMajorStopsOnlyItsPartition: a record of a higher major schema
// version stops its partition (status and state report say why) and loses
// nothing; the other partitions go on; a higher minor version is accepted.
func TestNewerMajorStopsOnlyItsPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, 0)
		defer b.close()
		b.topic("orders", 1)
		b.topic(schedTopic, 2)
		s, stop := b.start(b.config("a"))
		synctest.Wait()
		now := b.now()
		at := func(p int32, r *kgo.Record) *kgo.Record { r.Partition = p; return r }
		newer := &kgo.Record{Topic: schedTopic, Key: []byte("v2"), Value: []byte("from the future"), Headers: hdr(
			"schedule_schema_version", "2.0.0", "schedule_source_type", "schedule", "schedule_when", "soon")}
		minor := b.sched("orders", now.Add(time.Second), "minor")
		for i := range minor.Headers {
			if minor.Headers[i].Key == envelope.HeaderSchemaVersion {
				minor.Headers[i].Value = []byte("1.4.0")
			}
		}
		recs := []*kgo.Record{
			at(1, b.sched("orders", now.Add(time.Second), "before")),
			at(1, newer),
			at(1, b.sched("orders", now.Add(time.Second), "after")),
			at(0, b.sched("orders", now.Add(time.Second), "other partition")),
			at(0, minor),
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.Dialer(b.vn.DialContext), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		require.NoError(t, err)
		defer cl.Close()
		require.NoError(t, cl.ProduceSync(context.Background(), recs...).FirstErr())
		b.sleepUntil(now.Add(3 * time.Second))

		targets := b.consume("orders")
		defer targets.Close()
		require.ElementsMatch(t, []string{"other partition", "minor"}, values(drain(targets)))
		for _, p := range s.Engine().Status().Partitions {
			if p.Partition == 1 {
				require.Equal(t, state.Stopped, p.State)
				require.Contains(t, p.Reason, "2.0.0")
				require.Contains(t, p.Reason, "offset "+strconv.FormatInt(newer.Offset, 10))
			} else {
				require.Equal(t, state.Loaded, p.State)
			}
		}
		require.False(t, s.Engine().Status().Ready, "a stopped partition is not ready")

		// The state report says why, and nothing was written to the
		// stopped partition: no tombstone, no rejection.
		states := b.consume(schedTopic + "_states")
		defer states.Close()
		var last *state.Report
		for _, r := range drain(states) {
			if r.Partition == 1 {
				rep, err := state.Decode(r.Value)
				require.NoError(t, err)
				last = rep
			}
		}
		require.Equal(t, state.Stopped, last.State)
		require.Contains(t, last.Reason, "2.0.0")
		sched := b.consume(schedTopic)
		defer sched.Close()
		var onOne []string
		for _, r := range drain(sched) {
			if r.Partition == 1 {
				onOne = append(onOne, string(r.Value))
			}
		}
		require.Equal(t, []string{"before", "from the future", "after"}, onOne, "nothing lost, nothing written")
		stop()
	})
}

// TestUnauthorizedTarget: a target topic this service may not write to is
// rejected as unauthorized (kfake ACLs); other schedules go on.
func TestUnauthorizedTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		allow := func(rt kmsg.ACLResourceType, name string) kfake.ACL {
			return kfake.ACL{Resource: rt, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationAll, Allow: true}
		}
		vn := new(kfake.VirtualNetwork)
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(19092), kfake.ListenFn(vn.Listen),
			kfake.GroupMinSessionTimeout(100*time.Millisecond),
			kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser("PLAIN", "admin", "admin"),
			kfake.User("PLAIN", "svc", "svc-pass",
				allow(kmsg.ACLResourceTypeTopic, "*"), allow(kmsg.ACLResourceTypeGroup, "*"),
				allow(kmsg.ACLResourceTypeTransactionalId, "*"), allow(kmsg.ACLResourceTypeCluster, "kafka-cluster"),
				kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "secret", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationWrite, Allow: false},
			),
		)
		require.NoError(t, err)
		defer c.Close()
		admin, err := kgo.NewClient(kgo.SeedBrokers("localhost:19092"), kgo.Dialer(vn.DialContext),
			kgo.SASL(plain.Auth{User: "admin", Pass: "admin"}.AsMechanism()))
		require.NoError(t, err)
		defer admin.Close()
		adm := kadm.NewClient(admin)
		for _, name := range []string{"orders", "secret"} {
			_, err := adm.CreateTopic(context.Background(), 1, 1, nil, name)
			require.NoError(t, err)
		}
		b := &bubble{t: t, vn: vn, cluster: c, brokers: []string{"localhost:19092"}, cl: admin, adm: adm}
		cfg := b.config("a")
		cfg.Conn.SASLMechanism, cfg.Conn.SASLUser, cfg.Conn.SASLPassword = "plain", "svc", "svc-pass"
		_, stop := b.start(cfg)
		defer stop()
		synctest.Wait()
		now := b.now()
		s1, err := envelope.Schedule("secret", now, []byte("not for us"), envelope.WithKey("s"))
		require.NoError(t, err)
		s2, err := envelope.Schedule("orders", now, []byte("fine"), envelope.WithKey("o"))
		require.NoError(t, err)
		require.NoError(t, admin.ProduceSync(context.Background(), s1, s2).FirstErr())
		b.sleepUntil(now.Add(2 * time.Second))

		read := func(topic string) []*kgo.Record {
			cl := b.consume(topic, kgo.SASL(plain.Auth{User: "admin", Pass: "admin"}.AsMechanism()))
			defer cl.Close()
			return drain(cl)
		}
		require.Equal(t, []string{"fine"}, values(read("orders")))
		require.Empty(t, read("secret"))
		var codes []string
		for _, r := range read(schedTopic + "_logs") {
			if string(r.Key) == "s" {
				code, _ := envelope.Header(r.Headers, envelope.HeaderError)
				codes = append(codes, string(code))
			}
		}
		require.Equal(t, []string{string(envelope.CodeUnauthorized)}, codes)
	})
}
