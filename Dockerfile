# jobhost in a container: a static binary on a minimal, non-root base.
#
#   docker build -t jobhost .                                   # cmd/jobhost: the CLI, no functions
#   docker build -t orders-worker \
#     --build-arg MAIN=./examples/orders/worker \
#     --build-arg HOST_JSON=examples/orders/host.json .         # a worker with functions compiled in
#   docker run --rm -e AzureWebJobsStorage=... orders-worker   # runs `run`; docker stop drains
#
# Your own worker, in your own module: copy this file, point MAIN at the
# package whose main calls cli.Main() and HOST_JSON at its host.json.
# Settings come from the environment (app settings as variables, host.json
# keys as AzureFunctionsJobHost__path__to__key); nothing is written to the
# working directory, so the root filesystem may be read-only.
# docs/deploy.md ("Container") explains each choice.

# Base images as arguments, for a mirror or a pinned digest:
#   --build-arg GO_IMAGE=myregistry.example.com/golang:1.26 --build-arg BASE_IMAGE=...
ARG GO_IMAGE=docker.io/library/golang:1.26
# distroless static: CA certificates, tzdata (WEBSITE_TIME_ZONE timers),
# /etc/passwd with nonroot = 65532, no shell, no libc.
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The main package to build, relative to the module root.
ARG MAIN=./cmd/jobhost
# A host.json to ship next to the binary ("" for none: defaults).
ARG HOST_JSON=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# The whole module, .git included (.dockerignore): go build stamps the
# version and commit from it (-buildvcs), which `host started`, the
# jobhost_build_info metric and `go version -m` show.
COPY . .
# The build: static (no cgo, no libc), paths trimmed, symbols and DWARF
# stripped, the time zone database embedded as a fallback for a base
# without /usr/share/zoneinfo. deploy/container_test.go runs this exact
# line, so keep it on one RUN.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" go build -trimpath -buildvcs=auto -tags timetzdata -ldflags="-s -w" -o /out/app/jobhost "$MAIN"
RUN if [ -n "$HOST_JSON" ]; then cp "$HOST_JSON" /out/app/host.json; fi

FROM ${BASE_IMAGE}
# Only for the image's labels; the binary's own version is what go build
# stamped above.
ARG VERSION=unknown
LABEL org.opencontainers.image.title="jobhost" \
      org.opencontainers.image.source="https://github.com/jobhost/jobhost" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/app /app
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can check it without
# /etc/passwd.
USER 65532:65532
# SIGTERM (docker stop, Kubernetes) drains within jobhost.shutdownTimeout
# (default 25 s; give docker stop -t / terminationGracePeriodSeconds that
# plus 5 s); a second SIGTERM or SIGINT exits at once. The binary is PID 1
# and handles both itself, and starts no child processes, so no init is
# needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/jobhost"]
CMD ["run"]
