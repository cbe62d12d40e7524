package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/state"
)

// bin is the scheduler binary, built once for the package's tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scheduler-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "scheduler")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/scheduler").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the scheduler: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address free to listen on, for a process
// started later. It is taken below the kernel's ephemeral range
// (ip_local_port_range, 32768 and up here): a port the kernel handed out
// and took back may meanwhile be the local end of some client's
// connection, and the process would then fail to bind it.
func freePort(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running scheduler process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func startBin(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinAt(t, bin, args...)
}

// startBinAt starts the scheduler binary at path.
func startBinAt(t *testing.T, path string, args ...string) *proc {
	t.Helper()
	return startBinAtEnv(t, path, []string{"SCHEDULER_LOG_LEVEL=info"}, args...)
}

// startBinAtEnv starts the scheduler binary at path with env added to
// this process's environment.
func startBinAtEnv(t *testing.T, path string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(path, args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("scheduler output:\n%s", p.stderr.String())
		}
	})
	return p
}

// stop sends sig and waits up to limit for the process to exit; it
// returns the exit code.
func (p *proc) stop(t *testing.T, sig os.Signal, limit time.Duration) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("the scheduler did not exit within %v of %v", limit, sig)
	}
	return p.cmd.ProcessState.ExitCode()
}

// tool runs a CLI subcommand to completion.
func tool(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return string(out), code
}

func waitReady(t *testing.T, httpAddr string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "the scheduler at %s never became ready", httpAddr)
}

// TestBinaryQuickstart: the built binary, started as the README says with
// no brokers, serves on its embedded broker; `scheduler schedule` then
// delivers; `scheduler states` shows loaded partitions; SIGTERM exits 0;
// after a restart on the same data directory nothing is sent again and a
// schedule written before the restart still goes out.
func TestBinaryQuickstart(t *testing.T) {
	kafkaAddr, httpAddr, data := freePort(t), freePort(t), t.TempDir()
	runEnv := func(env ...string) *proc {
		return startBinAtEnv(t, bin, append([]string{"SCHEDULER_LOG_LEVEL=info"}, env...),
			"run", "--embedded-addr", kafkaAddr, "--data-dir", data, "--http-addr", httpAddr, "--instance-id", "quickstart")
	}
	run := func() *proc { return runEnv() }
	p := run()
	waitReady(t, httpAddr, 30*time.Second)
	require.Contains(t, p.stderr.String(), "embedded", "the log says it runs on the embedded broker")
	// The collector's target, as the Go collector exports it: run sets
	// service.GCPercent unless GOGC is set (the second run below sets it).
	if _, set := os.LookupEnv("GOGC"); !set {
		require.Equal(t, int64(service.GCPercent), metric(t, httpAddr, "go_gc_gogc_percent"), "run sets the collector's target")
	}

	out, code := tool(t, "topics", "create", "--brokers", kafkaAddr, "--target", "orders")
	require.Equal(t, 0, code, out)
	out, code = tool(t, "schedule", "--brokers", kafkaAddr, "--target-topic", "orders", "--in", "1s", "--payload", "hello")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `^key=orders-[0-9a-f-]{36} partition=\d+ offset=\d+ due=\S+\n$`, out)

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	require.NoError(t, err)
	defer cl.Close()
	h := &harness{t: t, brokers: []string{kafkaAddr}, cl: cl, adm: kadm.NewClient(cl)}
	got := h.readCommitted("orders", 1, 15*time.Second)
	require.Equal(t, []string{"hello"}, values(got))

	out, code = tool(t, "states", "--brokers", kafkaAddr)
	require.Equal(t, 0, code, out)
	require.Equal(t, 5, strings.Count(out, " loaded "), out)

	require.Equal(t, 0, p.stop(t, syscall.SIGTERM, 10*time.Second), "SIGTERM exits 0")
	require.Contains(t, p.stderr.String(), "left the group")

	// A schedule written while the service is down, due soon.
	p = runEnv("GOGC=200")
	waitReady(t, httpAddr, 30*time.Second)
	require.Equal(t, int64(200), metric(t, httpAddr, "go_gc_gogc_percent"), "GOGC set: run leaves the collector's target alone")
	out, code = tool(t, "schedule", "--brokers", kafkaAddr, "--target-topic", "orders", "--in", "3s", "--payload", "second", "--key", "k2")
	require.Equal(t, 0, code, out)
	require.Equal(t, 0, p.stop(t, syscall.SIGTERM, 10*time.Second))
	p = run()
	waitReady(t, httpAddr, 30*time.Second)
	got = h.readCommitted("orders", 2, 30*time.Second)
	// Anything sent again would be committed by now, with the second.
	got = append(got[:0], h.readCommitted("orders", -1, 15*time.Second)...)
	require.ElementsMatch(t, []string{"hello", "second"}, values(got), "the data directory kept the schedule; the first was not sent again")
	require.Equal(t, 0, p.stop(t, syscall.SIGTERM, 10*time.Second))
}

// TestBinaryGracefulShutdownUnderLoad: SIGTERM while batches are in flight
// exits 0 within 10 s, publishes stopped reports, leaves the group, and a
// restart neither loses nor duplicates.
func TestBinaryGracefulShutdownUnderLoad(t *testing.T) {
	h := newHarness(t)
	h.createTopic("orders", 3)
	h.createTopic(schedTopic, 5)
	const n = 3000
	start := time.Now()
	due := h.schedules("orders", n, start.Add(2*time.Second), time.Millisecond) // 3000 within 3 s
	brokers := strings.Join(h.brokers, ",")
	run := func() (*proc, string) {
		httpAddr := freePort(t)
		return startBin(t, "run", "--brokers", brokers, "--instance-id", "a", "--http-addr", httpAddr, "--flush-batch-size", "50"), httpAddr
	}
	p, httpAddr := run()
	waitReady(t, httpAddr, 30*time.Second)
	// Hold the next commit at the broker, so that SIGTERM finds a batch in
	// flight.
	var held atomic.Bool
	heldNow := make(chan struct{})
	h.cluster.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		if held.Swap(true) {
			return nil, nil, false
		}
		close(heldNow)
		h.cluster.SleepControl(func() { time.Sleep(2 * time.Second) })
		return nil, nil, false
	})
	select {
	case <-heldNow:
	case <-time.After(60 * time.Second):
		t.Fatal("no batch was ever committed")
	}
	require.Equal(t, 0, p.stop(t, syscall.SIGTERM, 10*time.Second), "SIGTERM exits 0 within 10 s")
	require.Contains(t, p.stderr.String(), "waiting for the batch in flight")
	require.Contains(t, p.stderr.String(), "left the group")

	reports := h.latestReports(schedTopic)
	require.Len(t, reports, 5)
	for part, r := range reports {
		require.Equal(t, state.Stopped, r.State, "partition %d", part)
	}
	groups, err := h.adm.DescribeGroups(context.Background(), "scheduler")
	require.NoError(t, err)
	require.Empty(t, groups["scheduler"].Members, "the instance left the group")

	run()
	h.waitOnce("orders", n, due)
}

// TestBinaryKilled: SIGKILL mid-dispatch, restart: nothing lost, and a
// read_committed consumer sees no duplicate.
func TestBinaryKilled(t *testing.T) {
	h := newHarness(t)
	h.createTopic("orders", 3)
	h.createTopic(schedTopic, 5)
	const n = 2000
	start := time.Now()
	due := h.schedules("orders", n, start.Add(2*time.Second), 2*time.Millisecond) // over 4 s
	brokers := strings.Join(h.brokers, ",")
	for round := 0; time.Since(start) < 6*time.Second; round++ {
		httpAddr := freePort(t)
		p := startBin(t, "run", "--brokers", brokers, "--instance-id", "a", "--http-addr", httpAddr, "--flush-batch-size", "20")
		time.Sleep(time.Duration(1200+300*round) * time.Millisecond)
		p.stop(t, syscall.SIGKILL, 5*time.Second)
	}
	startBin(t, "run", "--brokers", brokers, "--instance-id", "a", "--http-addr", freePort(t))
	h.waitOnce("orders", n, due)
}
