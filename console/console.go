// Package console is the operators' console of SPEC 11: a page served on
// GET / that shows the whole group (every partition's latest state report,
// read from the states topics), pending schedules per UTC day, this
// instance's last hour, and finds a schedule by key; and the JSON behind
// it, GET /api/group, GET /api/schedules/{key} and GET /api/recurring (the
// recurring schedules this instance holds, recurring.go).
//
// It is read-only and renders no payload and no header value: header
// names only, and of the schedule's control headers only the due time and
// the target topic. The page is server-rendered with html/template, which
// escapes every user-controlled string (keys, topic names, error
// messages); its stylesheet and its small script are embedded, so it works
// air-gapped, and a Content-Security-Policy keeps it to them.
//
// What it costs the service: one Kafka client reading the states topics
// (reader.go), a ring of samples of the service's own metrics (rates.go),
// and one more client every lookup shares: per lookup, one question to
// the loop per candidate partition (consumer.Engine.Find) and, when memory
// cannot answer, the key's newest records read from the topics with
// Fetch requests of their own (internal/logscan). At most
// Config.LookupConcurrency lookups run at once (one more gets 429), each
// within Config.LookupTimeout, all of them within Config.LookupShare of
// the clock: people looking keys up never slow dispatching.
//
// A lookup (also `scheduler inspect` and `scheduler cancel`, which have no
// service behind them) looks in the partition each producer partitioner
// gives the key (internal/partitioner, --key-partitioner), asks the loop
// (lookup.go), else reads the key's records from the topics (history.go)
// and decides from them where the schedule stands (decide.go). The page
// itself is view.go and templates/.
package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/scheduler-dev/scheduler/consumer"
	"github.com/scheduler-dev/scheduler/internal/health"
	"github.com/scheduler-dev/scheduler/internal/topic"
)

//go:embed assets templates
var files embed.FS

// Engine is what the console reads of the service's loop.
type Engine interface {
	Instance
	Status() *consumer.Status
	// Recurring lists the recurring schedules the loop holds
	// (consumer.Engine.Recurring), waiting for a fresh list until ctx
	// ends.
	Recurring(ctx context.Context) *consumer.RecurringList
}

// Defaults of Config.
const (
	DefaultStateInterval     = consumer.DefaultStateInterval // the service's own
	DefaultLookupTimeout     = 10 * time.Second
	DefaultLookupConcurrency = 4
	DefaultLookupShare       = 0.25 // of the clock
	DefaultRefresh           = 5 * time.Second
	DefaultSampleEvery       = 10 * time.Second
)

// Config configures a Console.
type Config struct {
	Sets       []topic.Set
	InstanceID string
	Group      string
	// StateInterval is the service's --state-interval: a report older than
	// three of them is marked stale. Default DefaultStateInterval.
	StateInterval time.Duration
	// Opts connect the console's clients to the cluster.
	Opts []kgo.Opt
	// KeyPartitioner is how producers partitioned the schedule keys a
	// lookup looks for (partitioner.Auto: any known partitioner). Default
	// partitioner.DefaultKey.
	KeyPartitioner string
	// Engine is the service's loop: this instance's detail and memory.
	// Default nil: no instance section, lookups read the topics.
	Engine Engine
	// Gatherer has the service's metrics, sampled for the last hour's
	// rates. Default nil: no rates.
	Gatherer prometheus.Gatherer
	// Health receives the states reader's problems. Default nil.
	Health *health.Registry
	Logger zerolog.Logger
	Now    func() time.Time // default time.Now
	// LookupTimeout bounds a lookup that reads the topics. Default
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
	// LookupConcurrency bounds the lookups running at once; one more is
	// answered 429 at once. Default DefaultLookupConcurrency.
	LookupConcurrency int
	// LookupShare bounds the fraction of the clock all lookups together
	// spend reading the topics (fetching and decoding): what people ask
	// for takes a bounded share of the CPU dispatching needs, on any
	// machine. Default DefaultLookupShare; 1 or more: no bound.
	LookupShare float64
	// Refresh is how often the page refreshes itself. Default
	// DefaultRefresh.
	Refresh time.Duration
	// SampleEvery is how often the metrics are sampled. Default
	// Refresh, at most DefaultSampleEvery.
	SampleEvery time.Duration
}

func (c *Config) defaults() {
	if c.StateInterval <= 0 {
		c.StateInterval = DefaultStateInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = DefaultLookupTimeout
	}
	if c.LookupConcurrency <= 0 {
		c.LookupConcurrency = DefaultLookupConcurrency
	}
	if c.LookupShare <= 0 {
		c.LookupShare = DefaultLookupShare
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.SampleEvery <= 0 {
		// As often as the page refreshes, so that a refresh shows news.
		c.SampleEvery = min(DefaultSampleEvery, c.Refresh)
	}
}

// Console serves the page and its JSON. Build it with New, Run it for its
// readers, and mount it with Register.
type Console struct {
	cfg    Config
	reader *reader
	rates  *rates
	finder *Finder
	// lookups holds a token per lookup running; lookupCl is their client,
	// apart from the states reader's, whose long polls would hold a
	// lookup's fetches behind them on a shared connection.
	lookups  chan struct{}
	lookupCl *kgo.Client
	page     *template.Template
	assets   http.Handler
	bufs     sync.Pool
}

// New builds a Console. It connects nothing until Run.
func New(cfg Config) (*Console, error) {
	cfg.defaults()
	if len(cfg.Sets) == 0 {
		return nil, errors.New("console: at least one topic set is required")
	}
	log := cfg.Logger.With().Str("component", "console").Logger()
	r, err := newReader(cfg.Sets, cfg.Opts, log, cfg.Now, cfg.Health)
	if err != nil {
		return nil, err
	}
	lcl, err := kgo.NewClient(cfg.Opts...)
	if err != nil {
		r.cl.Close()
		return nil, err
	}
	c := &Console{cfg: cfg, reader: r, lookups: make(chan struct{}, cfg.LookupConcurrency), lookupCl: lcl}
	var status func() *consumer.Status
	var inst Instance
	if cfg.Engine != nil {
		status, inst = cfg.Engine.Status, cfg.Engine
	}
	c.rates = newRates(cfg.Gatherer, status, cfg.SampleEvery, cfg.Now)
	c.finder = NewFinder(FinderConfig{
		Sets: cfg.Sets, Client: lcl, KeyPartitioner: cfg.KeyPartitioner, Share: cfg.LookupShare,
		Instance: inst, Owner: c.owner, Now: cfg.Now,
	})
	c.page, err = template.New("page.html").Funcs(funcs).ParseFS(files, "templates/page.html")
	if err != nil {
		c.Close()
		return nil, err
	}
	assets, _ := fs.Sub(files, "assets")
	c.assets = http.StripPrefix("/assets/", http.FileServerFS(assets))
	return c, nil
}

// Run reads the states topics and samples the metrics until ctx ends. It
// returns once its clients are closed.
func (c *Console) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { c.rates.run(ctx) })
	c.reader.run(ctx)
	wg.Wait()
	c.lookupCl.Close()
}

// Close releases the clients when Run was never called.
func (c *Console) Close() {
	c.reader.cl.Close()
	c.lookupCl.Close()
}

// errBusy is the answer to a lookup beyond LookupConcurrency.
var errBusy = errors.New("too many lookups are running")

// lookup runs one lookup, bounded by LookupTimeout, if fewer than
// LookupConcurrency run now; else it fails at once with errBusy.
func (c *Console) lookup(ctx context.Context, q Query) (Result, error) {
	select {
	case c.lookups <- struct{}{}:
		defer func() { <-c.lookups }()
	default:
		return Result{}, fmt.Errorf("%w (%d at once, --lookup-concurrency); try again in a second", errBusy, cap(c.lookups))
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LookupTimeout)
	defer cancel()
	return c.finder.Lookup(ctx, q)
}

// Register mounts the console on mux: GET (and HEAD) only; any other method
// gets 405 from the mux.
func (c *Console) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.servePage)
	mux.HandleFunc("GET /api/group", c.serveGroup)
	mux.HandleFunc("GET /api/schedules/{key...}", c.serveSchedule)
	mux.HandleFunc("GET /api/recurring", c.serveRecurring)
	mux.Handle("GET /assets/", c.assets)
}

// Handler is the console alone on a mux of its own.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	c.Register(mux)
	return mux
}

// owner names the instance of a partition's latest report.
func (c *Console) owner(topic string, partition int32) string {
	if s, ok := c.reader.snapshot().reports[partKey{topic, partition}]; ok {
		return s.report.Instance
	}
	return ""
}

// securityHeaders keep the page to its own assets: no inline script, no
// other origin, no framing.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (c *Console) servePage(w http.ResponseWriter, r *http.Request) {
	now := c.cfg.Now()
	v := c.view(now)
	status := http.StatusOK
	if v.Inst != nil {
		v.Inst.Recurring = c.recurringSection(r.Context(), now)
	}
	if q, ok, err := query(r, r.URL.Query().Get("key")); ok {
		v.Form = formView{Key: q.Key, Topic: r.URL.Query().Get("topic"), Partition: r.URL.Query().Get("partition"), PartitionKey: r.URL.Query().Get("partition_key")}
		lv := &lookupView{Asked: true}
		switch {
		case err != nil:
			lv.Problem = err.Error()
		case r.Method == http.MethodHead:
			// A HEAD is answered without the lookup: it has no body to
			// show it in, and link checkers and probes send them.
		default:
			res, err := c.lookup(r.Context(), q)
			switch {
			case errors.Is(err, errBusy):
				lv.Problem = err.Error()
				status = http.StatusTooManyRequests
				w.Header().Set("Retry-After", "1")
			case err != nil:
				lv.Problem = err.Error()
			default:
				lv.Result = &res
			}
		}
		v.Lookup = lv
	}
	buf := c.buf()
	defer c.bufs.Put(buf)
	if err := c.page.Execute(buf, v); err != nil {
		c.cfg.Logger.Error().Err(err).Msg("console: rendering the page")
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) buf() *bytes.Buffer {
	if b, ok := c.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// query reads a lookup from the request: the key, and optionally topic,
// partition or partition_key. ok is false when no key was asked.
func query(r *http.Request, key string) (q Query, ok bool, err error) {
	vals := r.URL.Query()
	if key == "" && !vals.Has("key") {
		return Query{}, false, nil
	}
	q = Query{Key: key, Topic: vals.Get("topic"), Partition: -1}
	if key == "" {
		return q, true, errors.New("a key is required")
	}
	p, pk := vals.Get("partition"), vals.Get("partition_key")
	switch {
	case p != "" && pk != "":
		return q, true, errors.New("give partition or partition_key, not both")
	case p != "":
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			return q, true, errors.New("partition must be a partition number (0 or more)")
		}
		q.Partition = int32(n)
	case vals.Has("partition_key") && pk != "":
		q.PartitionKey = &pk
	}
	return q, true, nil
}

func (c *Console) serveGroup(w http.ResponseWriter, r *http.Request) {
	now := c.cfg.Now()
	g := c.groupRows(now)
	out := GroupJSON{GeneratedAt: now.UTC(), StaleAfterMs: (3 * c.cfg.StateInterval).Milliseconds(), Partitions: make([]PartitionJSON, 0, len(g.Rows)), ReaderError: g.ReaderError}
	for _, row := range g.Rows {
		out.Partitions = append(out.Partitions, row.json())
	}
	writeJSON(w, r, http.StatusOK, out)
}

func (c *Console) serveSchedule(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, _, err := query(r, key)
	if err != nil {
		writeJSON(w, r, http.StatusBadRequest, map[string]string{"key": key, "problem": err.Error()})
		return
	}
	if r.Method == http.MethodHead {
		// No lookup for a HEAD: it would cost a GET's reads to answer
		// nothing. 200 says the API is there, not that the key is.
		securityHeaders(w)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		return
	}
	res, err := c.lookup(r.Context(), q)
	switch {
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, r, http.StatusTooManyRequests, map[string]string{"key": key, "problem": err.Error()})
	case errors.Is(err, ErrBadQuery):
		writeJSON(w, r, http.StatusBadRequest, map[string]string{"key": key, "problem": err.Error()})
	case err != nil:
		writeJSON(w, r, http.StatusServiceUnavailable, map[string]string{"key": key, "problem": err.Error()})
	case res.State == StateUnknown:
		writeJSON(w, r, http.StatusNotFound, res)
	default:
		writeJSON(w, r, http.StatusOK, res)
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	securityHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
