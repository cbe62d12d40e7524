// Package crontest holds the table of firings across the 2026 changes of
// the clocks in New York and Paris (dst.json), worked out by hand from
// the zone rules and SPEC 10, so that the rules are checked against one
// table at every level: package cron's Next, `scheduler cron`, and the
// service on a fake clock. It is for tests only.
package crontest

import (
	_ "embed"
	"encoding/json"
	"testing"
	"time"
)

//go:embed dst.json
var dstJSON []byte

// Case is an expression read in a zone, and its first firings after From.
type Case struct {
	Day  string      `json:"day"` // which change of the clocks, e.g. new-york-fall
	Zone string      `json:"zone"`
	Expr string      `json:"expr"`
	From time.Time   `json:"from"`
	Want []time.Time `json:"want"`
}

// Name names the case for a subtest.
func (c Case) Name() string { return c.Day + "/" + c.Expr }

// DST returns the table.
func DST(tb testing.TB) []Case {
	tb.Helper()
	var t struct {
		Cases []Case `json:"cases"`
	}
	if err := json.Unmarshal(dstJSON, &t); err != nil {
		tb.Fatalf("crontest: dst.json: %v", err)
	}
	if len(t.Cases) == 0 {
		tb.Fatal("crontest: dst.json has no case")
	}
	return t.Cases
}
