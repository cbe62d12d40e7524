package integration

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/service"
)

// checkLeaks fails the test if a goroutine it started outlives it. Call it
// first: cleanups run last-in first-out, so the check runs after every
// other cleanup (the service's, the broker's).
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// The test's HTTP client keeps idle connections to the service.
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(ignore); err != nil {
			t.Error(err)
		}
	})
}

// startAsync starts a service that may not finish its startup steps for a
// while; unlike harness.start it does not wait for them.
func startAsync(t *testing.T, cfg service.Config) (*service.Service, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := service.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		_ = s.Wait()
	})
	return s, cancel
}

// waitBody waits until GET path answers code with a body containing every
// one of want.
func waitBody(t *testing.T, s *service.Service, path string, code int, want ...string) string {
	t.Helper()
	var last string
	var lastCode int
	deadline := time.Now().Add(60 * time.Second)
	for {
		lastCode, last = httpGet(t, "http://"+s.HTTPAddr()+path)
		ok := lastCode == code
		for _, w := range want {
			ok = ok && strings.Contains(last, w)
		}
		if ok {
			return last
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "the body never said it", "%s: want %d with %q, last %d:\n%s", path, code, want, lastCode, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dispatchOne schedules one message due now and waits for it on target,
// after whatever target held already.
func (h *harness) dispatchOne(target, payload string) {
	h.t.Helper()
	before := len(h.readCommitted(target, -1, 10*time.Second))
	h.produce(h.schedule(target, time.Now(), payload))
	recs := h.readCommitted(target, before+1, 60*time.Second)
	require.Len(h.t, recs, before+1, "the schedule was not dispatched")
	require.Equal(h.t, payload, string(recs[before].Value))
}

// TestStartupNotReady: the cluster answers the service's startup steps
// with errors for a while. Before, an InitProducerID error panicked the
// service (a callback reached an engine not built yet). Now each fault
// shows on /healthz and /readyz with its cause while it lasts, the
// service becomes ready by itself when it ends, and dispatches.
func TestStartupNotReady(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     kfake.Fault
		component string
		cause     health.Cause
	}{
		{"init producer id non-retriable", kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.UnknownServerError},
			service.ComponentProducer, health.CauseKafka},
		{"init producer id retriable", kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.CoordinatorLoadInProgress},
			service.ComponentProducer, health.CauseCoordinator},
		{"topic creation refused", kfake.Fault{Keys: []kmsg.Key{kmsg.CreateTopics}, Err: kerr.PolicyViolation},
			service.ComponentTopics, health.CauseTopics},
		{"group coordinator unavailable", kfake.Fault{Keys: []kmsg.Key{kmsg.FindCoordinator}, Group: "scheduler", Err: kerr.CoordinatorNotAvailable},
			"group", health.CauseCoordinator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t)
			h.createTopic("out", 1)
			f := tc.fault
			f.Count = -1 // until removed, once the test has seen the fault reported
			fh := h.cluster.Fault(f)
			cfg := h.config("a")
			cfg.Partitions = 2
			s, _ := startAsync(t, cfg)

			body := waitBody(t, s, "/readyz", http.StatusServiceUnavailable, `"component": "`+tc.component+`"`, `"cause": "`+string(tc.cause)+`"`)
			t.Logf("/readyz while the fault lasts:\n%s", body)
			// /healthz: the brokers answer, so the process is healthy, and
			// its body names the fault too.
			waitBody(t, s, "/healthz", http.StatusOK, `"status": "ok"`, `"cause": "`+string(tc.cause)+`"`)
			require.GreaterOrEqual(t, fh.Hits(), 1)
			fh.Remove()

			waitBody(t, s, "/readyz", http.StatusOK, `"ready": true`)
			_, b := httpGet(t, "http://"+s.HTTPAddr()+"/healthz")
			require.NotContains(t, b, "problems", "a healed fault still shows")
			h.dispatchOne("out", "after "+tc.name)
		})
	}
}

// TestStartupBrokersAway: the service starts before its broker, which
// comes up 30s later (3s with -short). Before, Start blocked without
// serving HTTP. Now /healthz says the brokers are unreachable meanwhile,
// and the service starts by itself once they answer.
func TestStartupBrokersAway(t *testing.T) {
	checkLeaks(t)
	away := 30 * time.Second
	if testing.Short() {
		away = 3 * time.Second
	}
	// A port below the ephemeral range (freePort), not one the kernel
	// handed out and took back: for the outage, the service's own dials
	// and those of the tests in other processes take ephemeral ports, and
	// one of them could hold this port (even connect to itself on it)
	// when the broker comes to bind it.
	addr := freePort(t)

	cfg := (&harness{t: t, brokers: []string{addr}}).config("a")
	cfg.Partitions = 1
	began := time.Now()
	s, _ := startAsync(t, cfg)

	body := waitBody(t, s, "/healthz", http.StatusServiceUnavailable, `"status": "unreachable"`, `"cause": "brokers_unreachable"`)
	t.Logf("/healthz while the brokers are away:\n%s", body)
	waitBody(t, s, "/readyz", http.StatusServiceUnavailable, `"component": "brokers"`, `"message": "reaching the brokers"`)
	time.Sleep(time.Until(began.Add(away))) // the outage itself, not a wait for a result
	waitBody(t, s, "/readyz", http.StatusServiceUnavailable, `"cause": "brokers_unreachable"`)

	port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	require.NoError(t, err)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	require.NoError(t, err)
	h := newHarnessOn(t, c)
	h.createTopic("out", 1)

	waitBody(t, s, "/readyz", http.StatusOK, `"ready": true`)
	h.dispatchOne("out", "after the brokers came")
}

// TestStartupAllFaults: every startup step and every callback of the
// service fails a few times at once (producer id, topic creation, group
// coordinator, join, offsets, produce, metadata of the target), with a
// schedule already due. Nothing panics, the schedule goes out once.
func TestStartupAllFaults(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic("out", 1)
	h.createTopic(schedTopic, 1)
	h.produce(h.schedule("out", time.Now(), "due at start"))
	handles := []*kfake.FaultHandle{
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.UnknownServerError, Count: 2}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.CoordinatorLoadInProgress, Count: 2}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.CreateTopics}, Err: kerr.PolicyViolation, Count: 1}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.FindCoordinator}, Err: kerr.CoordinatorNotAvailable, Count: 3}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup}, Err: kerr.CoordinatorLoadInProgress, Count: 2}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.NotLeaderForPartition, Count: 2}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "out", Err: kerr.NotLeaderForPartition, Count: 3}),
		h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.CoordinatorLoadInProgress, Count: 2}),
	}
	cfg := h.config("a")
	s, _ := startAsync(t, cfg)
	waitBody(t, s, "/readyz", http.StatusOK, `"ready": true`)
	recs := h.readCommitted("out", 1, 60*time.Second)
	require.Len(t, recs, 1)
	require.Equal(t, "due at start", string(recs[0].Value))
	for i, fh := range handles {
		t.Logf("fault %d hit %d times", i, fh.Hits())
	}
	require.Equal(t, 2, handles[0].Hits(), "the non-retriable producer id fault did not fire")
	require.Equal(t, 1, handles[2].Hits(), "the topic creation fault did not fire")
	h.dispatchOne("out", "later")
	require.Len(t, h.readCommitted("out", -1, 10*time.Second), 2, "a schedule went out twice")
}

// TestStartupFatalConfig: the broker refuses the transactional id (a
// missing ACL). Retrying cannot heal that, so once the fault has lasted
// --config-fault-wait the service ends with an error naming the cause,
// and /readyz said so meanwhile.
func TestStartupFatalConfig(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	fh := h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.TransactionalIDAuthorizationFailed, Count: -1})
	defer fh.Remove()
	cfg := h.config("a")
	cfg.ConfigFaultWait = 3 * time.Second
	s, _ := startAsync(t, cfg)
	waitBody(t, s, "/readyz", http.StatusServiceUnavailable, `"cause": "authorization_failed"`, `"config": true`, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED")
	select {
	case <-s.Done():
	case <-time.After(60 * time.Second):
		require.FailNow(t, "the service did not give up")
	}
	err := s.Wait()
	require.Error(t, err)
	var fe *service.FaultError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.ErrorIs(t, err, kerr.TransactionalIDAuthorizationFailed)
	require.Equal(t, health.CauseAuthorization, fe.Cause)
	require.Equal(t, service.ComponentProducer, fe.Component)
	require.NotContains(t, err.Error(), "\n")
	t.Logf("the service ended with: %v", err)
}

// TestStartupGroupDenied: the group refuses this instance (a missing
// ACL on the group). The startup steps pass, the loop runs, the group
// keeps failing: the service ends after --config-fault-wait, naming it.
func TestStartupGroupDenied(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	fh := h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.FindCoordinator}, Group: "scheduler", Err: kerr.GroupAuthorizationFailed, Count: -1})
	defer fh.Remove()
	cfg := h.config("a")
	cfg.ConfigFaultWait = 2 * time.Second
	s, _ := startAsync(t, cfg)
	waitBody(t, s, "/readyz", http.StatusServiceUnavailable, `"component": "group"`, `"cause": "authorization_failed"`)
	select {
	case <-s.Done():
	case <-time.After(60 * time.Second):
		require.FailNow(t, "the service did not give up")
	}
	err := s.Wait()
	var fe *service.FaultError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, "group", fe.Component)
	require.Equal(t, health.CauseAuthorization, fe.Cause)
	t.Logf("the service ended with: %v", err)
}

// TestMissingTargetLoggedAtOnce: a schedule due now for a topic that does
// not exist is logged at once with the wait (--target-wait), not only
// when the wait ends in a rejection.
func TestMissingTargetLoggedAtOnce(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t)
	h.createTopic(schedTopic, 1)
	cfg, logs := withLogs(h.config("a"))
	cfg.TargetWait = time.Hour // the rejection cannot be what the test sees
	s, _ := h.start(cfg)
	waitAssigned(t, s, 30*time.Second)
	h.produce(h.schedule("nowhere", time.Now(), "x"))
	const msg = "target topic does not exist: its schedules wait for it up to --target-wait once due, then are rejected as target_unavailable"
	eventually(t, 30*time.Second, func() bool { return len(logs.lines(msg)) == 1 }, "the wait was not logged")
	l := logs.lines(msg)[0]
	require.Equal(t, "nowhere", l["topic"])
	require.Equal(t, "warn", l["level"])
}
