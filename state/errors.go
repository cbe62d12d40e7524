package state

import "errors"

var (
	// ErrBadTransition is a state change the partition lifecycle does not
	// allow; it means the caller lost track of the partition, not bad input.
	ErrBadTransition = errors.New("state: illegal transition")

	// ErrCorrupt is a report that cannot be read: not zlib, truncated, not
	// JSON, or JSON that breaks the contract.
	ErrCorrupt = errors.New("state: corrupt report")

	// ErrTooLarge is a report that inflates past MaxDecodedBytes. Kept apart
	// from ErrCorrupt so a zip bomb is visible as such in logs.
	ErrTooLarge = errors.New("state: report too large")

	// ErrUnsupportedVersion is a report written with a schema of a newer
	// major version. It is not corrupt: this service is too old to read it.
	ErrUnsupportedVersion = errors.New("state: unsupported schema version")

	// ErrInvalid is a report Encode refuses to write because Decode would
	// refuse to read it.
	ErrInvalid = errors.New("state: invalid report")
)
