package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
)

// TestLint: `helm lint --strict` through the SDK, on the chart's own
// defaults and on each ci/ values file: no error and no warning.
func TestLint(t *testing.T) {
	for _, file := range append([]string{""}, ciValues(t)...) {
		name := "defaults"
		if file != "" {
			name = filepath.Base(file)
		}
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if vals, err = loader.LoadValues(bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
			}
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			res := lint.Run([]string{chartDir}, vals)
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
				if m.Severity > support.InfoSev {
					t.Errorf("lint: %s", m)
				}
			}
			if res.TotalChartsLinted != 1 || len(res.Errors) > 0 {
				t.Fatalf("linted %d charts, errors %v", res.TotalChartsLinted, res.Errors)
			}
		})
	}
}
