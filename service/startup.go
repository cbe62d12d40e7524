package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/dispatcher"
	"github.com/scheduler-dev/scheduler/internal/health"
)

// Health components of the startup steps; the engine reports "group" and
// "dispatcher" (consumer.Component*).
const (
	ComponentStartup  = "startup"  // which step the service is waiting on
	ComponentBrokers  = "brokers"  // reaching the cluster
	ComponentTopics   = "topics"   // ensuring the service's topics
	ComponentProducer = "producer" // initialising the transactional producer
)

// FaultError is why the service gave up: a fault that retrying does not
// heal (credentials, certificates, ACLs, missing topics) lasted longer
// than Config.ConfigFaultWait.
type FaultError struct {
	Component string
	Cause     health.Cause
	Waited    time.Duration
	Err       error
}

func (e *FaultError) Error() string {
	if hint := health.Explain(e.Err); hint != "" {
		return fmt.Sprintf("%s: %s: %v (a fault of configuration, still there after %v of retrying; fix it and restart)", e.Cause, hint, e.Err, e.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: %v (a fault of configuration, still there after %v of retrying; fix it and restart)", e.Cause, e.Err, e.Waited.Round(time.Millisecond))
}

func (e *FaultError) Unwrap() error { return e.Err }

// run takes the startup steps, then runs the loop until ctx ends, then
// stops everything.
func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	// Kill ends the startup steps too; this goroutine ends with them.
	startCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.kill:
			cancel()
		case <-startCtx.Done():
		}
	}()
	err := s.startup(startCtx)
	cancel()
	switch {
	case err == nil:
		s.health.Clear(ComponentStartup)
		close(s.started)
		s.log.Info().Strs("topics", s.cfg.Topics).Str("group", s.cfg.Group).Str("instance", s.cfg.InstanceID).
			Bool("exactly_once", s.cfg.ExactlyOnce).Msg("scheduler started")
		bgCtx, cancelBG := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			s.targets.Run(bgCtx)
		}()
		go func() {
			defer wg.Done()
			s.watch(bgCtx)
		}()
		err = s.engine.Run(ctx)
		cancelBG()
		wg.Wait()
	case isClosed(s.kill):
		err = consumer.ErrKilled
	case ctx.Err() != nil:
		err = nil // stopped while starting: nothing to finish
	}
	s.err = err
	s.close()
}

// startup takes the steps that need the cluster, each retried until it
// succeeds (see step).
func (s *Service) startup(ctx context.Context) error {
	if err := s.step(ctx, ComponentBrokers, "reaching the brokers", func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return s.rep.Ping(pctx)
	}); err != nil {
		return err
	}
	if err := s.step(ctx, ComponentTopics, "ensuring the topics", func(ctx context.Context) error {
		_, err := EnsureTopics(ctx, s.rep, s.cfg.TopicSets(), TopicOptions{
			Partitions: s.cfg.Partitions, ReplicationFactor: s.cfg.ReplicationFactor,
			LogsRetention: s.cfg.LogsRetention, Create: s.cfg.CreateTopics,
		})
		return topicsFault(err)
	}); err != nil {
		return err
	}
	// Initialise the transactional id before joining the group: that
	// fences an earlier incarnation of this instance and ends its open
	// transaction. Joining first would deadlock: the offset fetch that
	// gives us our partitions waits for that transaction, which would
	// only end when our first batch initialised the id.
	return s.step(ctx, ComponentProducer, "initialising the transactional producer", func(ctx context.Context) error {
		ictx, cancel := context.WithTimeout(ctx, s.cfg.FlushTimeout)
		defer cancel()
		err := s.disp.Init(ictx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// franz-go retries a coordinator that answers it is loading
			// or moving until our deadline: the brokers answer (the
			// step before), the transaction coordinator does not.
			return &health.Fault{Cause: health.CauseCoordinator, Err: fmt.Errorf("the transaction coordinator did not answer within %v: %w", s.cfg.FlushTimeout, err)}
		}
		return err
	})
}

// topicsFault names the cause of an error ensuring the topics: a missing
// topic the service may not create, or a partition count that does not
// match, needs a person; other answers of the broker are about topics.
func topicsFault(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrTopics) {
		return &health.Fault{Cause: health.CauseTopics, Config: true, Err: err}
	}
	switch cause, config := health.Classify(err); cause {
	case health.CauseKafka, health.CauseOther:
		return &health.Fault{Cause: health.CauseTopics, Config: config, Err: err}
	}
	return err
}

// Backoff of the startup steps.
const (
	stepBackoffMin = 200 * time.Millisecond
	stepBackoffMax = 5 * time.Second
)

// step runs attempt until it succeeds, with capped exponential backoff,
// reporting each outcome to the health registry under component. A fault
// that heals by itself is retried for as long as it lasts; one that needs
// a person (health.Classify) ends the step with a *FaultError once it
// has lasted Config.ConfigFaultWait. A problem is logged as a warning when
// it appears or changes, then every tenth attempt.
func (s *Service) step(ctx context.Context, component, doing string, attempt func(context.Context) error) error {
	s.health.Set(ComponentStartup, health.CauseStarting, doing)
	backoff := dispatcher.Backoff{Min: stepBackoffMin, Max: stepBackoffMax}
	for {
		err := s.probs.conn.Diagnose(attempt(ctx))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p, changed := s.health.Report(component, err)
		if err == nil {
			if changed {
				s.log.Info().Str("step", doing).Msg("startup step succeeded after retrying")
			}
			return nil
		}
		if waited := s.now().Sub(p.Since); p.Config && waited >= s.cfg.ConfigFaultWait {
			return &FaultError{Component: component, Cause: p.Cause, Waited: waited, Err: err}
		}
		wait := backoff.Next()
		ev := s.log.Debug()
		if changed || p.Count%10 == 0 {
			ev = s.log.Warn()
		}
		if p.Hint != "" {
			ev = ev.Str("hint", p.Hint)
		}
		ev.Err(err).Str("step", doing).Str("cause", string(p.Cause)).Bool("config", p.Config).
			Int("attempt", p.Count).Dur("retry_in", wait).Msg("startup step failed; retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// watch ends the service when a fault that needs a person, reported by a
// component of the running service (the group: a missing ACL), lasts
// longer than Config.ConfigFaultWait before the instance first joined its
// group. Once it has joined, faults are reported and retried, never fatal:
// an ACL revoked at run time shows on /readyz and /status instead.
func (s *Service) watch(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.engine.Status().Joined {
			return
		}
		for _, p := range s.health.Problems() {
			if waited := s.now().Sub(p.Since); p.Config && waited >= s.cfg.ConfigFaultWait {
				s.engine.Fail(&FaultError{Component: p.Component, Cause: p.Cause, Waited: waited, Err: errors.New(p.Message)})
				return
			}
		}
	}
}

// StartEmbedded starts the embedded broker: franz-go's kfake, a
// Kafka-protocol broker in this process, persisting to dataDir so that
// schedules survive a restart.
func StartEmbedded(addr, dataDir string) (*kfake.Cluster, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DataDir(dataDir),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.GroupMinSessionTimeout(time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded broker on %s: %w", addr, err)
	}
	return c, nil
}
