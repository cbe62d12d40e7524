// Package cputime reads the CPU time the process has used, for benchmarks
// that report CPU per operation beside wall-clock time: on a shared
// machine CPU ratios travel, wall-clock ones do not.
package cputime
