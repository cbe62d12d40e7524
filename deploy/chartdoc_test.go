package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scheduler-dev/scheduler/deploy/internal/chartdoc"
)

// TestValuesDocumented: every value of values.yaml is documented where it
// is declared, and the chart README's table is the one made from those
// comments (`go run ./cmd/chartdoc` in deploy/ renews it).
func TestValuesDocumented(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chartdoc.Rows(values)
	if err != nil {
		t.Fatalf("values.yaml:\n%v", err)
	}
	if len(rows) < 40 {
		t.Fatalf("only %d documented values", len(rows))
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := chartdoc.Update(readme, chartdoc.Table(rows))
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(readme) {
		t.Fatal("the README's values table is not the one values.yaml makes: run `go run ./cmd/chartdoc` in deploy/")
	}
}

// TestChartdocRefusesUndocumented: a value without its comment is named.
func TestChartdocRefusesUndocumented(t *testing.T) {
	_, err := chartdoc.Rows([]byte("# -- documented\na: 1\nsection:\n  # -- documented\n  b: x\n  c: y\n"))
	if err == nil || !strings.Contains(err.Error(), "section.c is not documented") {
		t.Fatalf("want section.c named, got %v", err)
	}
}
