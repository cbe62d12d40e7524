package dispatcher

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// retryCode retries a request while it answers a retriable error code,
// briefly: a coordinator moving or a previous transaction still ending.
func retryCode(ctx context.Context, do func() (int16, error)) error {
	backoff := 20 * time.Millisecond
	for i := 0; ; i++ {
		code, err := do()
		if err != nil {
			return err
		}
		kerrv := kerr.ErrorForCode(code)
		if kerrv == nil {
			return nil
		}
		var ke *kerr.Error
		if !errors.As(kerrv, &ke) || !ke.Retriable || i >= 10 {
			return kerrv
		}
		select {
		case <-ctx.Done():
			return errors.Join(kerrv, ctx.Err())
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// jitter spreads retries of several instances apart: +-20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Backoff is capped exponential backoff with jitter, for retrying batches.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns how long to wait before the next retry.
func (b *Backoff) Next() time.Duration {
	d := b.Min << min(b.n, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	b.n++
	return jitter(d)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Describe summarises an error for status pages: the innermost Kafka error
// name when there is one.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message + ": " + strings.TrimSpace(err.Error())
	}
	return err.Error()
}
