// Command chartdoc writes the values table of the chart's README from its
// values.yaml (package chartdoc). Run it from deploy/:
//
//	go run ./cmd/chartdoc [chart directory, default helm/scheduler]
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/scheduler-dev/scheduler/deploy/internal/chartdoc"
)

func main() {
	dir := filepath.Join("helm", "scheduler")
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := run(dir); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	rows, err := chartdoc.Rows(values)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := chartdoc.Update(readme, chartdoc.Table(rows))
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
