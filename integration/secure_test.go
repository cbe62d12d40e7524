package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/envelope"
	"github.com/scheduler-dev/scheduler/internal/kclient"
	"github.com/scheduler-dev/scheduler/internal/securetest"
	"github.com/scheduler-dev/scheduler/service"
	"github.com/scheduler-dev/scheduler/state"
)

const (
	adminUser = "admin"
	adminPass = "admin-Secret-1"
	svcUser   = "scheduler"
	svcPass   = "Svc-pa55word-Never-Shown"
)

// secured is a kfake broker configured as a production cluster is, plus
// an administrator's client the test sets up and checks with.
type secured struct {
	t       *testing.T
	cluster *kfake.Cluster
	brokers []string
	admin   kclient.Conn // the superuser; TLS as the service
	cl      *kgo.Client
	adm     *kadm.Client
}

func newSecured(t *testing.T, admin kclient.Conn, opts ...kfake.Opt) *secured {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)...)
	require.NoError(t, err)
	s := &secured{t: t, cluster: c, brokers: c.ListenAddrs(), admin: admin}
	s.admin.Brokers = s.brokers
	s.cl = s.client(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	s.adm = kadm.NewClient(s.cl)
	t.Cleanup(func() {
		s.cl.Close()
		c.Close()
	})
	return s
}

func (s *secured) client(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	base, err := s.admin.Opts()
	require.NoError(s.t, err)
	cl, err := kgo.NewClient(append(base, opts...)...)
	require.NoError(s.t, err)
	return cl
}

// read returns every committed record of topic (not control records).
func (s *secured) read(topic string) []*kgo.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := s.adm.ListCommittedOffsets(ctx, topic)
	require.NoError(s.t, err)
	require.NoError(s.t, ends.Error())
	cl := s.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	var out []*kgo.Record
	pos := map[int32]int64{}
	done := func() bool {
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if pos[o.Partition] < o.Offset {
				ok = false
			}
		})
		return ok
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		require.NoError(s.t, ctx.Err(), "reading %s", topic)
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			pos[r.Partition] = r.Offset + 1
		})
	}
	return out
}

func (s *secured) createTopic(name string, partitions int32) {
	s.t.Helper()
	resp, err := s.adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	require.NoError(s.t, err)
	require.NoError(s.t, resp.Err)
}

// sasl is a SASL mode of the matrix.
type mode struct {
	name    string
	cluster func(dir string, pki *pki) []kfake.Opt
	conn    func(dir string, pki *pki) kclient.Conn // the service's and tools' settings (no brokers)
	admin   func(dir string, pki *pki) kclient.Conn
}

type pki struct {
	ca     *securetest.CA
	server *securetest.Leaf
	client *securetest.Leaf
}

func newPKI(t *testing.T, dir string) *pki {
	ca := securetest.NewCA(t, dir, "ca")
	return &pki{ca: ca, server: ca.Server(t, dir), client: ca.Client(t, dir, "client")}
}

func saslUsers(method string) []kfake.Opt {
	return []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(method, adminUser, adminPass), kfake.Superuser(method, svcUser, svcPass)}
}

func modes() []mode {
	tlsOnly := func(_ string, p *pki) kclient.Conn { return kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile} }
	mtls := func(_ string, p *pki) kclient.Conn {
		return kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, TLSCert: p.client.CertFile, TLSKey: p.client.KeyFile}
	}
	saslConn := func(mech string, user, pass string) func(string, *pki) kclient.Conn {
		return func(string, *pki) kclient.Conn {
			return kclient.Conn{SASLMechanism: mech, SASLUser: user, SASLPassword: kclient.Secret(pass)}
		}
	}
	return []mode{
		{"tls", func(_ string, p *pki) []kfake.Opt { return []kfake.Opt{kfake.TLS(securetest.ServerTLS(p.server, nil))} }, tlsOnly, tlsOnly},
		{"mutual-tls", func(_ string, p *pki) []kfake.Opt {
			return []kfake.Opt{kfake.TLS(securetest.ServerTLS(p.server, p.ca))}
		}, mtls, mtls},
		{"sasl-plain", func(string, *pki) []kfake.Opt { return saslUsers("PLAIN") },
			saslConn(kclient.SASLPlain, svcUser, svcPass), saslConn(kclient.SASLPlain, adminUser, adminPass)},
		{"scram-sha-256", func(string, *pki) []kfake.Opt { return saslUsers("SCRAM-SHA-256") },
			saslConn(kclient.SASLScramSHA256, svcUser, svcPass), saslConn(kclient.SASLScramSHA256, adminUser, adminPass)},
		{"scram-sha-512", func(string, *pki) []kfake.Opt { return saslUsers("SCRAM-SHA-512") },
			saslConn(kclient.SASLScramSHA512, svcUser, svcPass), saslConn(kclient.SASLScramSHA512, adminUser, adminPass)},
		{"sasl-ssl", func(_ string, p *pki) []kfake.Opt {
			return append(saslUsers("SCRAM-SHA-512"), kfake.TLS(securetest.ServerTLS(p.server, nil)))
		}, func(_ string, p *pki) kclient.Conn {
			return kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, TLSServerName: securetest.ServerName,
				SASLMechanism: kclient.SASLScramSHA512, SASLUser: svcUser, SASLPassword: svcPass}
		}, func(_ string, p *pki) kclient.Conn {
			return kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: adminUser, SASLPassword: adminPass}
		}},
	}
}

// connArgs turns settings into the CLI's flags and environment: the
// password goes in a file when file is true, else in the environment.
func connArgs(t *testing.T, dir string, c kclient.Conn, file bool) (args, env []string) {
	t.Helper()
	args = []string{"--brokers", strings.Join(c.Brokers, ",")}
	if c.TLS {
		args = append(args, "--tls", "--tls-ca", c.TLSCA)
	}
	if c.TLSCert != "" {
		args = append(args, "--tls-cert", c.TLSCert, "--tls-key", c.TLSKey)
	}
	if c.TLSServerName != "" {
		args = append(args, "--tls-server-name", c.TLSServerName)
	}
	if c.SASLMechanism != "" {
		args = append(args, "--sasl-mechanism", c.SASLMechanism, "--sasl-user", c.SASLUser)
		if file {
			args = append(args, "--sasl-password-file", securetest.WriteSecret(t, dir, "password-"+c.SASLUser, string(c.SASLPassword)))
		} else {
			env = append(env, "SCHEDULER_SASL_PASSWORD="+string(c.SASLPassword))
		}
	}
	return args, env
}

// toolIn runs a CLI subcommand with extra environment.
func toolIn(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return string(out), code
}

func startBinEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBinAtEnv(t, bin, env, args...)
}

// TestSecuredClusters: against a broker requiring TLS, mutual TLS, SASL
// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or SASL over TLS, the binary's
// `topics create`, `run`, `schedule`, `cancel` and `states` all work, the
// password given by file to some commands and by environment to others.
func TestSecuredClusters(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			p := newPKI(t, dir)
			s := newSecured(t, m.admin(dir, p), m.cluster(dir, p)...)
			s.createTopic("orders", 1)
			conn := m.conn(dir, p)
			conn.Brokers = s.brokers
			byFile, fileEnv := connArgs(t, dir, conn, true)
			byEnv, envEnv := connArgs(t, dir, conn, false)

			out, code := toolIn(t, envEnv, append([]string{"topics", "create", "--partitions", "2"}, byEnv...)...)
			require.Equal(t, 0, code, out)
			require.Contains(t, out, "topic=scheduled_messages partitions=2 created=true")

			httpAddr := freePort(t)
			run := startBinEnv(t, fileEnv, append([]string{"run", "--http-addr", httpAddr, "--instance-id", "a", "--create-topics=false",
				"--session-timeout", "3s", "--state-interval", "500ms", "--log-level", "debug"}, byFile...)...)
			waitReady(t, httpAddr, 60*time.Second)

			out, code = toolIn(t, fileEnv, append([]string{"schedule", "--target-topic", "orders", "--in", "0s", "--key", "now", "--payload", "delivered"}, byFile...)...)
			require.Equal(t, 0, code, out)
			out, code = toolIn(t, envEnv, append([]string{"schedule", "--target-topic", "orders", "--in", "1s", "--key", "cancelled", "--payload", "never"}, byEnv...)...)
			require.Equal(t, 0, code, out)
			out, code = toolIn(t, envEnv, append([]string{"cancel", "--key", "cancelled"}, byEnv...)...)
			require.Equal(t, 0, code, out)
			eventually(t, 30*time.Second, func() bool { return len(s.read("orders")) > 0 }, "nothing delivered")
			// The cancelled one was due a second later: give it time to
			// (wrongly) go out, by waiting for a later schedule.
			out, code = toolIn(t, envEnv, append([]string{"schedule", "--target-topic", "orders", "--in", "2s", "--key", "later", "--payload", "later"}, byEnv...)...)
			require.Equal(t, 0, code, out)
			eventually(t, 30*time.Second, func() bool { return len(s.read("orders")) >= 2 }, "the later one not delivered")
			require.Equal(t, []string{"delivered", "later"}, recordValues(s.read("orders")))

			out, code = toolIn(t, fileEnv, append([]string{"states", "--json"}, byFile...)...)
			require.Equal(t, 0, code, out)
			require.Contains(t, out, `"loaded"`)
			require.Equal(t, 0, run.stop(t, os.Interrupt, 30*time.Second))
			require.NotContains(t, run.stderr.String(), svcPass)
		})
	}
}

func recordValues(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

// grant is one kafka-acls.sh line of the README.
type grant struct {
	needs     string // the feature the README lists it under
	line      string
	operation string
	resource  string // Topic, Group, TransactionalId, Cluster
	name      string
	prefixed  bool
}

func (g grant) String() string { return g.operation + " on " + g.resource + ":" + g.name }

// readmeGrants reads the ACLs of the README's "Secured cluster" section.
func readmeGrants(t *testing.T) []grant {
	t.Helper()
	f, err := os.Open("../README.md")
	require.NoError(t, err)
	defer f.Close()
	var out []grant
	needs := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if n, ok := strings.CutPrefix(line, "# needs: "); ok {
			needs, _, _ = strings.Cut(n, " ")
			continue
		}
		if !strings.HasPrefix(line, "kafka-acls.sh ") {
			continue
		}
		g := grant{needs: needs, line: line}
		f := strings.Fields(line)
		for i := 0; i < len(f); i++ {
			arg := func() string { i++; return f[i] }
			switch f[i] {
			case "--allow-principal":
				require.Equal(t, "User:"+svcUser, arg())
			case "--operation":
				g.operation = arg()
			case "--topic":
				g.resource, g.name = "Topic", arg()
			case "--group":
				g.resource, g.name = "Group", arg()
			case "--transactional-id":
				g.resource, g.name = "TransactionalId", arg()
			case "--cluster":
				g.resource, g.name = "Cluster", "kafka-cluster"
			case "--resource-pattern-type":
				g.prefixed = arg() == "prefixed"
			}
		}
		require.NotEmpty(t, g.operation, line)
		require.NotEmpty(t, g.resource, line)
		out = append(out, g)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out, "no kafka-acls.sh lines in the README")
	return out
}

func (g grant) builder() *kadm.ACLBuilder {
	b := kadm.NewACLs().Allow("User:" + svcUser).AllowHosts("*")
	op, err := kmsg.ParseACLOperation(g.operation)
	if err != nil {
		panic(err)
	}
	b = b.Operations(op)
	if g.prefixed {
		b = b.ResourcePatternType(kadm.ACLPatternPrefixed)
	} else {
		b = b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	switch g.resource {
	case "Topic":
		b = b.Topics(g.name)
	case "Group":
		b = b.Groups(g.name)
	case "TransactionalId":
		b = b.TransactionalIDs(g.name)
	case "Cluster":
		b = b.Clusters()
	}
	return b
}

func (s *secured) grant(g grant) {
	s.t.Helper()
	res, err := s.adm.CreateACLs(context.Background(), g.builder())
	require.NoError(s.t, err)
	for _, r := range res {
		require.NoError(s.t, r.Err, g.line)
	}
}

func (s *secured) revoke(g grant) {
	s.t.Helper()
	res, err := s.adm.DeleteACLs(context.Background(), g.builder())
	require.NoError(s.t, err)
	n := 0
	for _, r := range res {
		require.NoError(s.t, r.Err, g.line)
		n += len(r.Deleted)
	}
	require.Equal(s.t, 1, n, "revoking %s", g)
}

// aclCluster starts a broker with TLS, SCRAM-SHA-512 and ACLs enforced,
// and grants the service's user the README's lines for the features named.
func aclCluster(t *testing.T, features ...string) (*secured, kclient.Conn, []grant) {
	t.Helper()
	dir := t.TempDir()
	p := newPKI(t, dir)
	s := newSecured(t, kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: adminUser, SASLPassword: adminPass},
		kfake.TLS(securetest.ServerTLS(p.server, nil)), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", adminUser, adminPass), kfake.User("SCRAM-SHA-512", svcUser, svcPass))
	var granted []grant
	for _, g := range readmeGrants(t) {
		for _, f := range features {
			if g.needs == f {
				s.grant(g)
				granted = append(granted, g)
			}
		}
	}
	s.createTopic("orders", 1)
	conn := kclient.Conn{Brokers: s.brokers, TLS: true, TLSCA: p.ca.PEMFile,
		SASLMechanism: kclient.SASLScramSHA512, SASLUser: svcUser, SASLPasswordFile: securetest.WriteSecret(t, dir, "pw", svcPass)}
	return s, conn, granted
}

func (s *secured) serviceConfig(conn kclient.Conn, instance string, logs io.Writer) service.Config {
	cfg := service.Default()
	cfg.Conn = conn
	cfg.InstanceID = instance
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Partitions = 2
	cfg.SessionTimeout = 3 * time.Second
	cfg.RebalanceTimeout = 5 * time.Second
	cfg.TransactionTimeout = 10 * time.Second
	cfg.FlushTimeout = 3 * time.Second
	cfg.StateInterval = 500 * time.Millisecond
	cfg.ReplicationFactor = 1
	cfg.ConfigFaultWait = 3 * time.Second
	w := logs
	if os.Getenv("SCHEDULER_TEST_LOGS") != "" {
		w = io.MultiWriter(logs, zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	}
	l := zerolog.New(w).Level(zerolog.TraceLevel).With().Timestamp().Str("instance", instance).Logger()
	cfg.Logger = &l
	return cfg
}

func (s *secured) start(cfg service.Config) (*service.Service, func() error) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := service.Start(ctx, cfg)
	require.NoError(s.t, err)
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return svc.Wait()
	}
	s.t.Cleanup(func() { _ = stop() })
	return svc, stop
}

func (s *secured) schedule(key, payload string, at time.Time) {
	s.t.Helper()
	r, err := envelope.Schedule("orders", at, []byte(payload), envelope.WithKey(key))
	require.NoError(s.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(s.t, s.cl.ProduceSync(ctx, r).FirstErr())
}

// problem is what /status says is wrong.
type problem struct {
	Component string `json:"component"`
	Cause     string `json:"cause"`
	Config    bool   `json:"config"`
	Hint      string `json:"hint"`
	Message   string `json:"message"`
}

func statusProblems(t *testing.T, addr string) []problem {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/status")
	require.Equal(t, http.StatusOK, code)
	var st struct {
		Problems []problem `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	return st.Problems
}

func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+addr+"/readyz")
}

func countValues(recs []*kgo.Record) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[string(r.Value)]++
	}
	return out
}

// TestLeastPrivilegeACLs: with exactly the README's ACLs (exactly-once,
// audit logs, topic creation) on a TLS + SCRAM-SHA-512 broker enforcing
// ACLs, the service creates its topics, dispatches each schedule once, and
// does so again after a restart. Then each grant is revoked in turn while
// a schedule falls due: the service names the missing grant once in its
// log and in /status, /readyz turns 503, nothing crashes, nothing is lost;
// when the grant is back it recovers by itself and the schedule goes out
// exactly once.
func TestLeastPrivilegeACLs(t *testing.T) {
	s, conn, granted := aclCluster(t, "always", "exactly-once", "logs", "create-topics")
	logs := &logBuffer{}
	cfg := s.serviceConfig(conn, "a", logs)
	svc, stop := s.start(cfg)
	addr := svc.HTTPAddr()
	eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusOK }, "never ready with the README's ACLs")

	s.schedule("first", "first", time.Now())
	eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))["first"] == 1 }, "first not delivered")
	require.NoError(t, stop())

	svc, stop = s.start(cfg)
	addr = svc.HTTPAddr()
	eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusOK }, "never ready after the restart")
	s.schedule("second", "second", time.Now())
	eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))["second"] == 1 }, "second not delivered after the restart")
	require.Empty(t, statusProblems(t, addr))

	for _, g := range granted {
		if g.needs == "create-topics" || (g.resource == "Topic" && g.name == "orders") {
			continue // only at start; and a target refused is rejected (below)
		}
		t.Run(g.String(), func(t *testing.T) {
			s.revoke(g)
			// Give it back even if a check below fails, so that one
			// failure does not fail every grant after it.
			back := false
			t.Cleanup(func() {
				if !back {
					s.grant(g)
				}
			})
			key := "while-" + strings.NewReplacer(" ", "-", ":", "-").Replace(g.String())
			s.schedule(key, key, time.Now())
			var found problem
			eventually(t, 60*time.Second, func() bool {
				for _, p := range statusProblems(t, addr) {
					if p.Cause == "authorization_failed" && strings.Contains(p.Hint, g.String()) {
						found = p
						return true
					}
				}
				return false
			}, "/status never named the missing grant %s", g)
			require.True(t, found.Config)
			code, body := readyz(t, addr)
			require.Equal(t, http.StatusServiceUnavailable, code, "not ready while %s is missing", g)
			require.Contains(t, body, g.String())
			// One log line per failing component names it, however often
			// the work was retried (the group, the dispatcher's commit or
			// the fetch may each meet the missing grant first). The line
			// follows the problem's registration, which /status shows:
			// wait for it, then count.
			eventually(t, 10*time.Second, func() bool { return logs.count(problemNaming(g, found.Component)) > 0 },
				"no log line names %s for %s", g, found.Component)
			for _, c := range []string{consumer.ComponentGroup, consumer.ComponentFetch, consumer.ComponentStates, consumer.ComponentDispatcher} {
				require.LessOrEqual(t, logs.count(problemNaming(g, c)), 1, "log lines of %s naming %s", c, g)
			}

			s.grant(g)
			back = true
			eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusOK }, "never ready again after %s came back", g)
			eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))[key] >= 1 }, "the schedule due while %s was missing was lost", g)
			require.Empty(t, statusProblems(t, addr))
		})
	}
	// A grant revoked and given back while nothing is written: the
	// problem clears by itself, without a record to prove it.
	for _, g := range granted {
		if g.resource == "Group" || g.resource == "Topic" && g.name == "scheduled_messages" && g.operation == "Read" {
			t.Run("quiet "+g.String(), func(t *testing.T) {
				said := logs.count(problemNaming(g, ""))
				s.revoke(g)
				back := false
				t.Cleanup(func() {
					if !back {
						s.grant(g)
					}
				})
				eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusServiceUnavailable }, "still ready without %s", g)
				// Said in the same words as any other component's
				// problem: one line naming the grant.
				eventually(t, 10*time.Second, func() bool { return logs.count(problemNaming(g, "")) > said }, "no new log line names %s", g)
				s.grant(g)
				back = true
				eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusOK }, "never ready again after %s came back", g)
				require.Empty(t, statusProblems(t, addr))
			})
		}
	}
	// Exactly once, each.
	for v, n := range countValues(s.read("orders")) {
		require.Equal(t, 1, n, "%q delivered %d times", v, n)
	}
	require.NoError(t, stop(), "the service ran to a clean shutdown")
	require.Contains(t, logs.String(), `"level":"trace"`, "trace lines were written and searched")
	require.NotContains(t, logs.String(), svcPass)
}

// problemNaming matches the service's log line of a problem that names
// the grant g, said by component (any when empty).
func problemNaming(g grant, component string) func(m map[string]any) bool {
	return func(m map[string]any) bool {
		h, _ := m["hint"].(string)
		return m["message"] == "problem: retrying until it clears" && strings.Contains(h, g.String()) &&
			(component == "" || m["component"] == component)
	}
}

// TestLeastPrivilegeOtherFeatures: at-least-once and without audit
// records, the README's shorter lists are enough.
func TestLeastPrivilegeOtherFeatures(t *testing.T) {
	for _, tc := range []struct {
		name        string
		features    []string
		exactlyOnce bool
		logs        bool
	}{
		{"at-least-once", []string{"always", "logs", "create-topics"}, false, true},
		{"logs off", []string{"always", "exactly-once", "create-topics"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, conn, _ := aclCluster(t, tc.features...)
			cfg := s.serviceConfig(conn, "a", io.Discard)
			cfg.ExactlyOnce, cfg.Logs = tc.exactlyOnce, tc.logs
			svc, stop := s.start(cfg)
			eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, svc.HTTPAddr()); return c == http.StatusOK }, "never ready")
			s.schedule("k", "v", time.Now())
			eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))["v"] == 1 }, "not delivered")
			require.Empty(t, statusProblems(t, svc.HTTPAddr()))
			require.NoError(t, stop())
		})
	}
}

// count returns how many log lines match.
func (l *logBuffer) count(match func(map[string]any) bool) int { return len(l.matching(match)) }

// matching returns the log lines that match.
func (l *logBuffer) matching(match func(map[string]any) bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && match(m) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecureFailuresNameTheCause: a wrong CA, a wrong server name, a wrong
// password and an unknown user each make the tools exit 1 with the cause,
// and the service give up after its wait with the cause, having said it
// once in its log rather than at every retry.
func TestSecureFailuresNameTheCause(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	other := securetest.NewCA(t, dir, "other")
	s := newSecured(t, kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: adminUser, SASLPassword: adminPass},
		kfake.TLS(securetest.ServerTLS(p.server, nil)), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", adminUser, adminPass), kfake.Superuser("SCRAM-SHA-512", svcUser, svcPass))
	good := kclient.Conn{Brokers: s.brokers, TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: svcUser, SASLPassword: svcPass}
	const wrongPass = "Wrong-Guess-0f-Pa55word"
	for _, tc := range []struct {
		name  string
		conn  func(kclient.Conn) kclient.Conn
		cause string // in the tools' error and the service's
		hint  string
	}{
		{"wrong ca", func(c kclient.Conn) kclient.Conn { c.TLSCA = other.PEMFile; return c },
			"tls_handshake_failed", "not signed by a CA this client trusts: check --tls-ca"},
		{"wrong server name", func(c kclient.Conn) kclient.Conn { c.TLSServerName = "kafka.elsewhere"; return c },
			"tls_handshake_failed", `not valid for the name "kafka.elsewhere"`},
		{"wrong password", func(c kclient.Conn) kclient.Conn { c.SASLPassword = wrongPass; return c },
			"sasl_authentication_failed", `SASL authentication as "scheduler" (scram-sha-512) failed`},
		{"unknown user", func(c kclient.Conn) kclient.Conn { c.SASLUser = "nobody"; c.SASLPassword = wrongPass; return c },
			"sasl_authentication_failed", `SASL authentication as "nobody" (scram-sha-512) failed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tc.conn(good)
			args, env := connArgs(t, dir, conn, false)
			out, code := toolIn(t, env, append([]string{"schedule", "--target-topic", "orders", "--in", "1h", "--timeout", "20s"}, args...)...)
			require.Equal(t, 1, code, out)
			require.Contains(t, out, tc.hint)
			require.NotContains(t, out, "deadline exceeded", "the cause, not the timeout")
			require.NotContains(t, out, wrongPass)
			require.NotContains(t, out, svcPass)
			out, code = toolIn(t, env, append([]string{"states", "--timeout", "20s"}, args...)...)
			require.Equal(t, 1, code, out)
			require.Contains(t, out, tc.hint)

			logs := &logBuffer{}
			cfg := s.serviceConfig(conn, "a", logs)
			cfg.ConfigFaultWait = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// Run, not Start: whether the wait happens before Start returns
			// or after, Run ends with the cause.
			err := service.Run(ctx, cfg)
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "gave up within its wait, not at the deadline")
			require.Contains(t, err.Error(), tc.hint)
			require.NotContains(t, err.Error(), wrongPass)
			said := logs.matching(func(m map[string]any) bool {
				return (m["level"] == "warn" || m["level"] == "error") && m["cause"] == tc.cause
			})
			require.Len(t, said, 1, "one log line for the cause, not one per retry: %s", strings.Join(said, "\n"))
			require.NotContains(t, logs.String(), wrongPass)
			require.NotContains(t, logs.String(), svcPass)
		})
	}
}

// TestSASLAuthenticationFailedAnswered: a broker that answers
// SASL_AUTHENTICATION_FAILED with a message, as Kafka does (kfake hangs
// up instead), is named with that message.
func TestSASLAuthenticationFailedAnswered(t *testing.T) {
	s := newSecured(t, kclient.Conn{SASLMechanism: kclient.SASLScramSHA256, SASLUser: adminUser, SASLPassword: adminPass}, saslUsers("SCRAM-SHA-256")...)
	s.cluster.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		s.cluster.KeepControl()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = 58 // SASL_AUTHENTICATION_FAILED
		resp.ErrorMessage = kmsg.StringPtr("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256")
		return resp, nil, true
	})
	conn := kclient.Conn{Brokers: s.brokers, SASLMechanism: kclient.SASLScramSHA256, SASLUser: svcUser, SASLPassword: svcPass}
	logs := &logBuffer{}
	cfg := s.serviceConfig(conn, "a", logs)
	cfg.ConfigFaultWait = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := service.Run(ctx, cfg)
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "gave up within its wait")
	require.Contains(t, err.Error(), "SASL authentication failed")
	require.Contains(t, err.Error(), "invalid credentials with SASL mechanism SCRAM-SHA-256")
	require.Equal(t, 1, logs.count(func(m map[string]any) bool {
		return (m["level"] == "warn" || m["level"] == "error") && m["cause"] == "sasl_authentication_failed"
	}))

	args, env := connArgs(t, t.TempDir(), conn, true)
	out, code := toolIn(t, env, append([]string{"topics", "create"}, args...)...)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "invalid credentials")
}

// TestRunExitsOnBadCredentials: the binary's `run` with a password that
// cannot work, or as a user the cluster does not know, exits 1 with one
// line naming the cause once its wait is over.
func TestRunExitsOnBadCredentials(t *testing.T) {
	s := newSecured(t, kclient.Conn{SASLMechanism: kclient.SASLScramSHA512, SASLUser: adminUser, SASLPassword: adminPass}, saslUsers("SCRAM-SHA-512")...)
	for _, tc := range []struct{ name, user string }{{"wrong password", svcUser}, {"unknown user", "nobody"}} {
		t.Run(tc.name, func(t *testing.T) {
			args, env := connArgs(t, t.TempDir(), kclient.Conn{Brokers: s.brokers, SASLMechanism: kclient.SASLScramSHA512, SASLUser: tc.user, SASLPassword: "not-the-Password-42"}, false)
			run := startBinEnv(t, env, append([]string{"run", "--http-addr", "", "--log-level", "debug"}, args...)...)
			select {
			case <-run.done:
			case <-time.After(2 * time.Minute):
				t.Fatal("run kept retrying credentials that cannot work")
			}
			require.Equal(t, 1, run.cmd.ProcessState.ExitCode())
			out := run.stderr.String()
			require.Contains(t, out, `SASL authentication as \"`+tc.user+`\" (scram-sha-512) failed`)
			require.NotContains(t, out, "not-the-Password-42")
		})
	}
}

// TestSecretsNeverShown: with the password given by environment, then by
// file, and the service at debug level through a missing grant and its
// recovery, the password is in no log line, no HTTP body, no state report,
// no tool output and not on the process's command line; and no payload is
// in any HTTP body.
func TestSecretsNeverShown(t *testing.T) {
	s, conn, granted := aclCluster(t, "always", "exactly-once", "logs", "create-topics", "reading")
	conn.SASLPassword, conn.SASLPasswordFile = svcPass, "" // connArgs puts it in the environment or a file
	dir := t.TempDir()
	const payload = "PAYLOAD-never-on-status-pages"
	var shown []string // everything the service and tools showed
	for i, byFile := range []bool{false, true} {
		args, env := connArgs(t, dir, conn, byFile)
		httpAddr := freePort(t)
		run := startBinEnv(t, env, append([]string{"run", "--http-addr", httpAddr, "--instance-id", "a", "--log-level", "debug",
			"--session-timeout", "3s", "--state-interval", "500ms", "--flush-timeout", "3s"}, args...)...)
		waitReady(t, httpAddr, 60*time.Second)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", run.cmd.Process.Pid))
		require.NoError(t, err)
		require.NotContains(t, string(cmdline), svcPass, "the password is not on the command line")
		if byFile {
			require.Contains(t, string(cmdline), "--sasl-password-file")
		}

		key := fmt.Sprintf("k%d", i)
		out, code := toolIn(t, env, append([]string{"schedule", "--target-topic", "orders", "--in", "0s", "--key", key, "--payload", payload}, args...)...)
		require.Equal(t, 0, code, out)
		shown = append(shown, out)
		eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))[payload] == 2*i+1 }, "not delivered")

		// A missing grant, so errors are made, logged and shown.
		var tomb grant
		for _, g := range granted {
			if g.resource == "Topic" && g.name == "scheduled_messages" && g.operation == "Write" {
				tomb = g
			}
		}
		s.revoke(tomb)
		out, code = toolIn(t, env, append([]string{"schedule", "--target-topic", "orders", "--in", "0s", "--key", key + "b", "--payload", payload}, args...)...)
		require.Equal(t, 1, code, "the tool may not write there either: %s", out)
		require.Contains(t, out, "grant ALLOW Write on Topic:scheduled_messages")
		shown = append(shown, out)
		s.schedule(key+"b", payload, time.Now()) // as the administrator
		eventually(t, 60*time.Second, func() bool {
			_, body := httpGet(t, "http://"+httpAddr+"/status")
			return strings.Contains(body, "authorization_failed")
		}, "the missing grant never showed")
		for _, path := range []string{"/status", "/healthz", "/readyz", "/metrics", "/", "/api/group"} {
			_, body := httpGet(t, "http://"+httpAddr+path)
			require.NotContains(t, body, payload, "%s shows a payload", path)
			shown = append(shown, body)
		}
		s.grant(tomb)
		waitReady(t, httpAddr, 60*time.Second)
		eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))[payload] == 2*i+2 }, "not delivered after the grant came back")
		out, code = toolIn(t, env, append([]string{"states", "--json"}, args...)...)
		require.Equal(t, 0, code, out)
		shown = append(shown, out)
		require.Equal(t, 0, run.stop(t, os.Interrupt, 30*time.Second))
		shown = append(shown, run.stderr.String())
		require.Contains(t, run.stderr.String(), `"level":"debug"`, "debug lines were written and searched")
	}
	for _, r := range s.read("scheduled_messages_states") {
		rep, err := state.Decode(r.Value)
		require.NoError(t, err)
		js, err := json.Marshal(rep)
		require.NoError(t, err)
		shown = append(shown, string(js))
	}
	all := strings.Join(shown, "\n")
	require.Contains(t, all, "Write on Topic:scheduled_messages", "the searched output includes the errors")
	require.NotContains(t, all, svcPass)
}

// TestHTTPIsReadOnly: every endpoint takes GET and HEAD only.
func TestHTTPIsReadOnly(t *testing.T) {
	h := newHarness(t)
	s, _ := h.start(h.config("a"))
	base := "http://" + s.HTTPAddr()
	for _, path := range []string{"/healthz", "/readyz", "/status", "/metrics", "/", "/api/group"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, err := http.NewRequest(method, base+path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.NotEqual(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", method, path)
			require.NotEqual(t, http.StatusNotFound, resp.StatusCode, "%s %s", method, path)
		}
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
			req, err := http.NewRequest(method, base+path, strings.NewReader("{}"))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", method, path)
		}
	}
}

// TestMissingCreateGrantNamed: without the README's Create line, a service
// that must create its topics says which grant it lacks.
func TestMissingCreateGrantNamed(t *testing.T) {
	s, conn, _ := aclCluster(t, "always", "exactly-once", "logs")
	cfg := s.serviceConfig(conn, "a", io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg.ConfigFaultWait = 2 * time.Second
	err := service.Run(ctx, cfg)
	require.Error(t, err, "ran without its topics")
	require.NoError(t, ctx.Err(), "gave up within its wait")
	require.Contains(t, err.Error(), "missing ACL Create on Topic:scheduled_messages")
	require.NotContains(t, err.Error(), svcPass)
}

// TestAtLeastOnceRefusedTombstoneNoDuplicates: at-least-once, while the
// broker refuses the tombstones (Write on the schedules topic revoked),
// the target is written once, not again at every retry; the tombstone
// follows when the grant is back.
func TestAtLeastOnceRefusedTombstoneNoDuplicates(t *testing.T) {
	s, conn, granted := aclCluster(t, "always", "logs", "create-topics")
	cfg := s.serviceConfig(conn, "a", io.Discard)
	cfg.ExactlyOnce = false
	svc, stop := s.start(cfg)
	addr := svc.HTTPAddr()
	eventually(t, 60*time.Second, func() bool { c, _ := readyz(t, addr); return c == http.StatusOK }, "never ready")
	var g grant
	for _, x := range granted {
		if x.resource == "Topic" && x.name == "scheduled_messages" && x.operation == "Write" {
			g = x
		}
	}
	s.revoke(g)
	s.schedule("k", "v", time.Now())
	eventually(t, 30*time.Second, func() bool { return countValues(s.read("orders"))["v"] == 1 }, "the target goes out")
	// Several retries of the tombstone (backoff from 100ms), each refused.
	eventually(t, 60*time.Second, func() bool {
		_, body := httpGet(t, "http://"+addr+"/status")
		return strings.Contains(body, "Write on Topic:scheduled_messages")
	}, "the missing grant named")
	flushErrors := func() float64 {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "scheduler_flush_errors_total "); ok {
				var f float64
				_, err := fmt.Sscan(v, &f)
				require.NoError(t, err)
				return f
			}
		}
		return 0
	}
	eventually(t, 60*time.Second, func() bool { return flushErrors() >= 4 }, "retried")
	s.grant(g)
	eventually(t, 60*time.Second, func() bool { return len(statusProblems(t, addr)) == 0 }, "never recovered")
	var tombstones int
	for _, r := range s.read("scheduled_messages") {
		if string(r.Key) == "k" && r.Value == nil {
			tombstones++
		}
	}
	require.Equal(t, 1, tombstones)
	require.Equal(t, 1, countValues(s.read("orders"))["v"], "one target, not one per retry")
	require.NoError(t, stop())
}

// TestSecureFailuresNotReadyDuringWait: the service serves HTTP while its
// startup steps retry, so during the wait for a fault of configuration
// (--config-fault-wait) a wrong CA, a wrong server name, a wrong password
// and an unknown user each show as not ready with their cause and hint on
// /readyz, /healthz (the brokers cannot be reached through them) and
// /status, with no secret; and the service stops cleanly from there.
func TestSecureFailuresNotReadyDuringWait(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	other := securetest.NewCA(t, dir, "other")
	s := newSecured(t, kclient.Conn{TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: adminUser, SASLPassword: adminPass},
		kfake.TLS(securetest.ServerTLS(p.server, nil)), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", adminUser, adminPass), kfake.Superuser("SCRAM-SHA-512", svcUser, svcPass))
	good := kclient.Conn{Brokers: s.brokers, TLS: true, TLSCA: p.ca.PEMFile, SASLMechanism: kclient.SASLScramSHA512, SASLUser: svcUser, SASLPassword: svcPass}
	const wrongPass = "Wrong-Guess-0f-Pa55word"
	for _, tc := range []struct {
		name  string
		conn  func(kclient.Conn) kclient.Conn
		cause string
		hint  string // as it appears in a JSON body
	}{
		{"wrong ca", func(c kclient.Conn) kclient.Conn { c.TLSCA = other.PEMFile; return c },
			"tls_handshake_failed", "not signed by a CA this client trusts: check --tls-ca"},
		{"wrong server name", func(c kclient.Conn) kclient.Conn { c.TLSServerName = "kafka.elsewhere"; return c },
			"tls_handshake_failed", `not valid for the name \"kafka.elsewhere\"`},
		{"wrong password", func(c kclient.Conn) kclient.Conn { c.SASLPassword = wrongPass; return c },
			"sasl_authentication_failed", `SASL authentication as \"scheduler\" (scram-sha-512) failed`},
		{"unknown user", func(c kclient.Conn) kclient.Conn { c.SASLUser = "nobody"; c.SASLPassword = wrongPass; return c },
			"sasl_authentication_failed", `SASL authentication as \"nobody\" (scram-sha-512) failed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			logs := &logBuffer{}
			cfg := s.serviceConfig(tc.conn(good), "a", logs)
			// Far longer than the test: it looks during the wait.
			cfg.ConfigFaultWait = 10 * time.Minute
			svc, stop := s.start(cfg)

			cause := `"cause": "` + tc.cause + `"`
			ready := waitBody(t, svc, "/readyz", http.StatusServiceUnavailable, `"ready": false`, cause, `"config": true`, tc.hint)
			health := waitBody(t, svc, "/healthz", http.StatusServiceUnavailable, `"status": "unreachable"`, cause, tc.hint)
			t.Logf("/readyz during the wait:\n%s\n/healthz:\n%s", ready, health)
			var named bool
			for _, pr := range statusProblems(t, svc.HTTPAddr()) {
				named = named || pr.Cause == tc.cause && pr.Config && pr.Hint != ""
			}
			require.True(t, named, "/status names the cause with a hint")
			for _, body := range []string{ready, health} {
				require.NotContains(t, body, wrongPass)
				require.NotContains(t, body, svcPass)
			}

			// Stopped during the wait, it ends without the fault.
			require.NoError(t, stop())
			require.NotContains(t, logs.String(), wrongPass)
			require.NotContains(t, logs.String(), svcPass)
		})
	}
}
