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
	$(GO) build -o bin/orders-worker ./examples/orders/worker
	$(GO) build -o bin/longoperation-demo ./examples/longoperation/demo

# Start Azurite on 127.0.0.1:10001 unless something listens there, run the
# sitemodify example host and feed it sample messages (one of them invalid,
# so it is retried and poisoned). Ctrl-C stops what this started.
run: $(AZURITE) build
	@bash examples/sitemodify/run.sh

# The bot pattern: a queued long operation whose completion is POSTed to the
# caller's callback endpoint.
run-longoperation: $(AZURITE) build
	@bash examples/longoperation/run.sh

# The whole suite against real servers; tests start their own Azurite.
test: $(AZURITE)
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -count=1 -timeout 12m ./...

clean:
	rm -rf bin
