package state

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the version of the report schema this package writes.
// Readers accept any 1.x.y: minor versions only add keys.
const SchemaVersion = "1.0.0"

// schemaMajor is the only major version this package can read.
const schemaMajor = "1"

// Report is one state report. The field order is the key order on the wire:
// the seven base keys Karafka writes, in Karafka's order, then this
// service's extensions. Do not reorder.
type Report struct {
	SchemaVersion string           `json:"schema_version"`
	DispatchedAt  Seconds          `json:"dispatched_at"`
	State         State            `json:"state"`
	Offsets       Offsets          `json:"offsets"`
	Daily         map[string]int64 `json:"daily"` // pending schedules per UTC day (see Day)
	StartedAt     int64            `json:"started_at"`
	Reloads       int64            `json:"reloads"`

	// Extensions. Karafka's reports lack them, so they decode as zero.
	Pending    int64     `json:"pending"`
	Recurring  int64     `json:"recurring"` // of Pending, how many recur (SPEC 10)
	Dispatched int64     `json:"dispatched"`
	Rejected   int64     `json:"rejected"`
	Lateness   *Lateness `json:"lateness_ms,omitempty"` // nil until something was dispatched
	LastError  string    `json:"last_error,omitempty"`
	Instance   string    `json:"instance"`
	Reason     string    `json:"reason,omitempty"` // why the partition is stopped
	Topic      string    `json:"topic"`
	Partition  int32     `json:"partition"`
}

// Offsets is the range of schedules-topic offsets the partition has read.
type Offsets struct {
	Low  int64 `json:"low"`
	High int64 `json:"high"`
}

// Lateness summarises how late dispatches were, in milliseconds.
type Lateness struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Seconds is a Unix time in seconds as a JSON float. It always encodes with a
// fraction or an exponent, so readers that distinguish integers from floats
// (Ruby's JSON does) see a float as Karafka's writer produces, even at a
// whole second.
type Seconds float64

// UnixSeconds is t truncated to the millisecond, the precision of
// dispatched_at: finer digits would only be noise to an operator.
func UnixSeconds(t time.Time) Seconds {
	// A whole number of milliseconds divided by 1000 is the float nearest the
	// decimal, so it encodes with at most three fraction digits.
	return Seconds(float64(t.UnixMilli()) / 1e3)
}

// MarshalJSON writes s as a float literal that parses back to exactly s.
func (s Seconds) MarshalJSON() ([]byte, error) {
	f := float64(s)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("dispatched_at is not finite")
	}
	// Same switch to exponent form as encoding/json, so extreme values stay
	// short.
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(make([]byte, 0, 24), f, format, -1, 64)
	if format == 'f' && bytes.IndexByte(b, '.') < 0 {
		b = append(b, ".0"...)
	}
	return b, nil
}

// SetTimes sets dispatched_at from now, with millisecond precision, and
// started_at from started, in whole seconds as Karafka writes it.
func (r *Report) SetTimes(now, started time.Time) {
	r.DispatchedAt = UnixSeconds(now)
	r.StartedAt = started.Unix()
}

// Day is the key of daily for schedules due at t: the UTC calendar day, so
// every instance and Karafka count the same schedule on the same day
// whatever their local zone.
func Day(t time.Time) string {
	return t.UTC().Format(time.DateOnly)
}

// check is the contract a report must meet on either side of the wire.
// Errors wrap ErrUnsupportedVersion for a newer major and nothing otherwise;
// Encode and Decode add their own sentinel.
func (r *Report) check() error {
	if err := checkVersion(r.SchemaVersion); err != nil {
		return err
	}
	if !r.State.Valid() {
		return errors.New("state " + strconv.Quote(string(r.State)) + " is not loading, loaded or stopped")
	}
	return nil
}

// checkVersion accepts MAJOR.MINOR.PATCH with major 1. A larger major is
// unsupported rather than corrupt whatever follows it, so a newer writer's
// format (say "2.0.0-rc1") still reads as "upgrade me".
func checkVersion(v string) error {
	major, rest, _ := strings.Cut(v, ".")
	if !digits(major) {
		return errors.New("schema_version " + strconv.Quote(v) + " is not MAJOR.MINOR.PATCH")
	}
	if m := strings.TrimLeft(major, "0"); m != schemaMajor {
		if m != "" {
			return &versionError{v}
		}
		return errors.New("schema_version " + strconv.Quote(v) + " has major 0")
	}
	minor, patch, ok := strings.Cut(rest, ".")
	if !ok || !digits(minor) || !digits(patch) {
		return errors.New("schema_version " + strconv.Quote(v) + " is not MAJOR.MINOR.PATCH")
	}
	return nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// versionError names the version so the log says which upgrade is needed.
type versionError struct{ version string }

func (e *versionError) Error() string {
	return "schema_version " + strconv.Quote(e.version) + " is newer than this service reads (major " + schemaMajor + "); upgrade the service"
}

func (e *versionError) Unwrap() error { return ErrUnsupportedVersion }
