package service

import (
	"context"
	"errors"
)

// Run runs the service until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	_ = ctx
	_ = cfg
	return errors.New("service.Run: being written")
}
