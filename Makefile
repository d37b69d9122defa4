# jobhost: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
AZURITE := node_modules/.bin/azurite-queue

.PHONY: run run-longoperation test vet fmt build clean

# Azurite, pinned in package.json / package-lock.json.
$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build:
	$(GO) build -o bin/jobhost ./cmd/jobhost
	$(GO) build -o bin/sitemodify-worker ./examples/sitemodify/worker
	$(GO) build -o bin/sitemodify-web ./examples/sitemodify/web
	$(GO) build -o bin/orders-worker ./examples/orders/worker
	$(GO) build -o bin/longoperation-demo ./examples/longoperation/demo

# Start Azurite (queues on 127.0.0.1:10001, tables on 10002) unless something
# listens there, run the sitemodify example host and feed it sample messages
# (one of them invalid, so it is retried and poisoned), walk through a
# background operation on its HTTP API (127.0.0.1:7071) with curl, and start
# the web front (127.0.0.1:8080). Ctrl-C stops what this started.
run: $(AZURITE) build
	@bash examples/sitemodify/run.sh

# The bot pattern on the operations API (127.0.0.1:7072): a bot submits long
# operations with its callback URL, polls, waits, cancels one, and verifies
# the signed completion callbacks.
run-longoperation: $(AZURITE) build
	@bash examples/longoperation/run.sh

# Debian's Chromium (the dashboard's browser tests), Prometheus (a real
# scrape of a running host) and zip (the WebJob package): installed with apt-get when missing and this
# runs as root; otherwise those tests skip (CI's flags make that a failure).
.PHONY: test-tools
test-tools:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v zip >/dev/null || missing="$$missing zip"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else echo "warning:$$missing missing (apt-get install$$missing): their tests skip"; fi; \
	fi

# The whole suite against real servers; tests start their own Azurite. The
# host, the drivers, the client, the stores and the dashboard (where
# concurrency lives) run under the race detector, the rest without it; then
# the browser tests (e2e/, a module of its own) in headless Chromium.
RACE_PKGS := ./runtime/... ./triggers/... ./client/... ./operations/... ./dashboard/... ./status/... ./tracing/... ./timer/...
test: $(AZURITE) test-tools
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -count=1 -timeout 12m -race $(RACE_PKGS)
	$(GO) test -count=1 -timeout 12m $$($(GO) list ./... | grep -v -e '/runtime' -e '/triggers' -e '/client' -e '/operations' -e '/dashboard' -e '/status' -e '/tracing' -e '/timer')
	cd e2e && $(GO) test -count=1 -timeout 5m ./...
	cd deploy/k8scheck && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...

clean:
	rm -rf bin

# Fault injection (chaos/, docs/reliability.md) at full size: SIGKILL mid-run,
# Azurite and RabbitMQ outages (including a real broker restart during delayed
# retries), a poison flood, a function outliving its
# lease, SIGTERM with functions in flight; then every fuzz target. make test
# runs the same chaos suite with bounded counts (about 3 minutes).
.PHONY: chaos fuzz
chaos: $(AZURITE)
	JOBHOST_CHAOS=full JOBHOST_CHAOS_RABBIT_RESTART=1 $(GO) test -count=1 -v -timeout 20m ./chaos/
	$(MAKE) fuzz

# Each fuzz target for FUZZTIME; make test runs their seed corpora.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzLoadConfig$$' -fuzztime=$(FUZZTIME) ./runtime
	$(GO) test -run='^$$' -fuzz='^FuzzParseTimeSpan$$' -fuzztime=$(FUZZTIME) ./runtime
	$(GO) test -run='^$$' -fuzz='^FuzzResultLine$$' -fuzztime=$(FUZZTIME) ./runtime
	$(GO) test -run='^$$' -fuzz='^FuzzBind$$' -fuzztime=$(FUZZTIME) ./bindings
	$(GO) test -run='^$$' -fuzz='^FuzzMetaEnvelope$$' -fuzztime=$(FUZZTIME) ./bindings
	$(GO) test -run='^$$' -fuzz='^FuzzPrefer$$' -fuzztime=$(FUZZTIME) ./operations/httpapi
	$(GO) test -run='^$$' -fuzz='^FuzzListQuery$$' -fuzztime=$(FUZZTIME) ./operations/httpapi
	$(GO) test -run='^$$' -fuzz='^FuzzRequest$$' -fuzztime=$(FUZZTIME) ./operations/httpapi

# Benchmarks (bench/ is its own module; method and results in
# docs/performance.md): jobhost against plain client loops and Watermill on
# Azurite, in memory, RabbitMQ and NATS JetStream. Both print a table and
# write bench/results/latest.json (and latest.md). bench-quick uses reduced
# counts and finishes in under 3 minutes.
.PHONY: bench bench-quick
bench: $(AZURITE)
	cd bench && $(GO) run ./cmd/bench

bench-quick: $(AZURITE)
	cd bench && $(GO) run ./cmd/bench -quick

# App Service continuous WebJob zip (docs/deploy.md, "App Service WebJob"):
# WEBJOB_MAIN is a worker whose main calls cli.Main (cmd/jobhost has no
# functions), WEBJOB_HOST_JSON the host.json shipped with it ("" for none).
WEBJOB_MAIN ?= ./examples/sitemodify/worker
WEBJOB_HOST_JSON ?= examples/sitemodify/host.json
WEBJOB_ZIP ?= bin/webjob.zip
.PHONY: webjob
webjob:
	GO=$(GO) deploy/webjob/build.sh $(WEBJOB_MAIN) $(WEBJOB_ZIP) $(WEBJOB_HOST_JSON)

# The container image (Dockerfile; docs/deploy.md, "Container"). DOCKER=podman
# works too (with the base images reachable).
DOCKER ?= docker
IMAGE ?= jobhost
IMAGE_MAIN ?= ./cmd/jobhost
IMAGE_HOST_JSON ?=
.PHONY: image
image:
	$(DOCKER) build -t $(IMAGE) --build-arg MAIN=$(IMAGE_MAIN) --build-arg HOST_JSON=$(IMAGE_HOST_JSON) .
