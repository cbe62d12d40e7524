// Package service owns the scheduler's lifecycle: it reaches or embeds a
// broker, ensures the topics, builds the Kafka clients, runs the consumer
// loop and the dispatcher, serves HTTP, and turns cancellation of its
// context into a graceful shutdown. The run subcommand is a thin wrapper
// around Run, and tests and the benchmark embed the whole service the same
// way.
package service
