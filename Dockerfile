# syntax=docker/dockerfile:1

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /scheduler ./cmd/scheduler \
 && mkdir -p /data

# Static binary, no shell: distroless static as the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /scheduler /scheduler
# The embedded broker (run without --brokers) needs a writable directory.
COPY --from=build --chown=65532:65532 /data /data
ENV SCHEDULER_DATA_DIR=/data
# In a container the loopback default would make HTTP unreachable (probes,
# Prometheus, a published port). Whoever reaches the port reads the console:
# guard it with --web-config-file (TLS, basic auth), a NetworkPolicy, or
# --console=false (README "Exposing the console").
ENV SCHEDULER_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/data"]
USER 65532:65532
ENTRYPOINT ["/scheduler"]
CMD ["run"]
