package envelope

import (
	"errors"
	"fmt"
)

// Code is a stable machine-readable reason for rejecting a schedule (SPEC
// section 5). It is written to the schedule_error header of the audit log.
type Code string

// The codes of SPEC sections 5 and 10.
const (
	CodeMissingKey        Code = "missing_key"
	CodeMissingHeader     Code = "missing_header"
	CodeBadEpoch          Code = "bad_epoch"
	CodeBadPartition      Code = "bad_partition"
	CodeUnknownSourceType Code = "unknown_source_type"
	CodeTargetNotAllowed  Code = "target_not_allowed"
	CodeTargetUnavailable Code = "target_unavailable"
	CodeTooLarge          Code = "too_large"
	CodeUnauthorized      Code = "unauthorized"
	CodeBadCron           Code = "bad_cron"
	CodeBadTimezone       Code = "bad_timezone"
)

// Codes lists every rejection code.
var Codes = []Code{
	CodeMissingKey, CodeMissingHeader, CodeBadEpoch, CodeBadPartition,
	CodeUnknownSourceType, CodeTargetNotAllowed, CodeTargetUnavailable,
	CodeTooLarge, CodeUnauthorized, CodeBadCron, CodeBadTimezone,
}

// Error is a schedule that can never be delivered. The service rejects it:
// it writes an audit log record with Code and Msg and tombstones it.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

// Is lets errors.Is match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// errorf builds an *Error.
func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// VersionError is a record written with a schema of a higher major version
// than this service knows. It is not a rejection: the partition that holds it
// stops until the service is upgraded, so nothing the newer producer meant is
// lost or misread.
type VersionError struct {
	Version string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("schedule_schema_version %q is newer than this service supports (major %d); upgrade the service", e.Version, SchemaMajor)
}

// ErrUnsupportedVersion matches any *VersionError with errors.Is.
var ErrUnsupportedVersion = errors.New("unsupported schema version")

// Is makes errors.Is(err, ErrUnsupportedVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }
