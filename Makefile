# Targets for working on the scheduler. The README's commands are the
# source of truth: `make run` and `make test` are those commands.

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 60s

.PHONY: run test lint fuzz bench build soak chart

# Run the service on its embedded broker (no --brokers).
run:
	go run ./cmd/scheduler run

# The test suite, as CI runs it (.ci/run also runs the deploy module's).
test:
	go test -race -timeout 20m ./...
	cd deploy && go test ./...

# The Helm chart through the helm CLI itself (built from the module proxy,
# which takes minutes the first time): lint, and render it on each ci/
# values file; then renew its README's values table.
HELM := helm.sh/helm/v4/cmd/helm@v4.3.2
chart:
	cd deploy && go run $(HELM) lint --strict helm/scheduler
	cd deploy && for f in helm/scheduler/ci/*-values.yaml; do \
		go run $(HELM) lint --strict helm/scheduler -f $$f && \
		go run $(HELM) template scheduler helm/scheduler -f $$f > /dev/null || exit 1; done
	cd deploy && go run ./cmd/chartdoc

build:
	go build -trimpath -o bin/scheduler ./cmd/scheduler

lint:
	gofmt -l . | (! grep .)
	go vet ./...
	go run $(STATICCHECK) ./...
	cd deploy && go vet ./... && go run $(STATICCHECK) ./...

# Each fuzz target for FUZZTIME; new findings land in testdata/fuzz.
fuzz:
	go test ./envelope/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	go test ./tracker/ -run '^$$' -fuzz '^FuzzUnpack$$' -fuzztime $(FUZZTIME)
	go test ./envelope/ -run '^$$' -fuzz '^FuzzParseDecimal$$' -fuzztime $(FUZZTIME)
	go test ./internal/cron/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	go test ./state/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	go test ./state/ -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME)

# Go benchmarks: the pure packages', then the consumer's and dispatcher's
# (on the in-process broker). The console's lookups load 10^6 schedules
# a partition and take minutes: BENCHMARKS.md "Lookups" runs them.
bench:
	go test -run '^$$' -bench . -benchmem ./envelope/ ./internal/record/ ./internal/cron/ ./internal/prefault/ ./tracker/ ./state/ ./consumer/ ./dispatcher/ ./internal/logscan/

# A long run of the built binary, not in CI: SOAK_MINUTES (default 10) at
# SOAK_RATE schedules a second (default 2000) with cancels, updates and
# group churn on the embedded broker; checks exactly-once delivery and that
# RSS and goroutines stay flat after the first minute (integration/soak_test.go).
SOAK_MINUTES ?= 10
SOAK_RATE    ?= 2000
soak: build
	SCHEDULER_SOAK_MINUTES=$(SOAK_MINUTES) SCHEDULER_SOAK_RATE=$(SOAK_RATE) SCHEDULER_SOAK_BIN=$(CURDIR)/bin/scheduler \
		go test ./integration/ -run '^TestSoak$$' -count=1 -v -timeout 0
