package integration

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scheduler-dev/scheduler/envelope"
)

func TestSmokeDispatch(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 3)
	s, _ := h.start(h.config("a"))
	eventually(t, 10*time.Second, func() bool { return s.Engine().Status().Ready && len(s.Engine().Status().Partitions) == 5 }, "service never became ready")

	due := time.Now().Add(time.Second)
	h.produce(h.schedule("orders", due, "hello", envelope.WithKey("k1"), envelope.WithTopic(schedTopic), envelope.WithTargetKey("tk")))
	got := h.readCommitted("orders", 1, 10*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, "hello", string(got[0].Value))
	require.False(t, time.Now().Before(due))
	t.Logf("lateness %v", got[0].Timestamp.Sub(due))
}

// TestHTTPEndpoints: /healthz, /readyz, /status and /metrics (SPEC 7).
func TestHTTPEndpoints(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("orders", 1)
	s, _ := h.start(h.config("a"))
	base := "http://" + s.HTTPAddr()
	code, body := httpGet(t, base+"/healthz")
	require.Equal(t, 200, code, body)
	eventually(t, 10*time.Second, func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == 200
	}, "never ready")
	due := time.Now().Add(200 * time.Millisecond)
	h.produce(h.schedule("orders", due, "x", envelope.WithTopic(schedTopic)))
	// And one held until after the test: its partition shows the memory
	// holding it.
	h.produce(h.schedule("orders", time.Now().Add(10*time.Minute), "later", envelope.WithTopic(schedTopic)))
	h.readCommitted("orders", 1, 10*time.Second)

	var st struct {
		Instance   string `json:"instance"`
		Ready      bool   `json:"ready"`
		Partitions []struct {
			Topic      string `json:"topic"`
			Partition  int32  `json:"partition"`
			State      string `json:"state"`
			Dispatched int64  `json:"dispatched"`
			Offsets    struct {
				Low, Position, End int64
			} `json:"offsets"`
			Lateness *struct {
				P50, P99, P999, Max float64
			} `json:"lateness_ms"`
			PendingToday *int64 `json:"pending_today"`
			Held         int    `json:"held"`
			BufferBytes  *int64 `json:"buffer_bytes"`
			Rejected     *int64 `json:"rejected"`
			Reloads      *int64 `json:"reloads"`
		} `json:"partitions"`
	}
	eventually(t, 5*time.Second, func() bool {
		code, body := httpGet(t, base+"/status")
		require.Equal(t, 200, code)
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		var n int64
		held := 0
		for _, p := range st.Partitions {
			n += p.Dispatched
			held += p.Held
		}
		return n == 1 && held == 1
	}, "status never counted the dispatch and the schedule held")
	require.Equal(t, "a", st.Instance)
	require.True(t, st.Ready)
	require.Len(t, st.Partitions, 5)
	held := 0
	for _, p := range st.Partitions {
		require.Equal(t, "loaded", p.State)
		require.NotNil(t, p.PendingToday)
		require.NotNil(t, p.Rejected)
		require.NotNil(t, p.Reloads)
		require.NotNil(t, p.BufferBytes)
		held += p.Held
		if p.Held > 0 {
			require.Greater(t, *p.BufferBytes, int64(len("later")), "partition %d holds a schedule in no memory", p.Partition)
		}
		if p.Dispatched == 1 {
			require.NotNil(t, p.Lateness, "lateness percentiles once something went out")
			require.GreaterOrEqual(t, p.Lateness.Max, p.Lateness.P50)
		}
	}
	require.Equal(t, 1, held, "the later schedule is held")
	code, body = httpGet(t, base+"/metrics")
	require.Equal(t, 200, code)
	for _, m := range []string{
		"scheduler_dispatched_total", "scheduler_pending", "scheduler_buffer_bytes", "scheduler_loading_progress",
		"scheduler_flush_duration_seconds_bucket", "scheduler_lateness_seconds_bucket",
		"scheduler_partition_state", "scheduler_kafka_consumer_", "scheduler_kafka_producer_",
	} {
		require.Contains(t, body, m)
	}
}
