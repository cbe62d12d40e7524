// Package service owns the scheduler's lifecycle. Start reaches the
// cluster or embeds a broker, builds the Kafka clients and every component
// (the dispatcher, the target metadata cache, the consumer loop, the
// console) before anything runs, serves HTTP, then takes the startup steps
// (reaching the brokers, ensuring the topics, initialising the
// transactional producer) while /healthz, /readyz and /status say what it
// waits for, runs the loop, and turns cancellation of its context into a
// graceful shutdown. The run subcommand is a thin wrapper around Run;
// tests and the benchmark embed the whole service the same way, and reach
// inside it only through Config.Hooks.
//
// Config has one field per run flag. Default fills them from the one
// constant of each default: the service's own Default* here, the others in
// the package that applies them (consumer, dispatcher, tracker, envelope,
// internal/partitioner). The service reads one clock, shifted only by
// Hooks.ClockOffset, and hands it to every component that reads time.
//
// Files: config.go (settings, defaults, validation), run.go (building the
// components, accessors, shutdown), startup.go (the startup steps, the
// loop, the fault watch, the embedded broker), topics.go (the topics of
// SPEC 2), http.go (the endpoints of SPEC 7), web.go (TLS and basic auth
// on them through the exporter-toolkit's web configuration, SPEC 9),
// problems.go (problems logged once).
package service
