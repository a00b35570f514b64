# The two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)
GO ?= go
# Sized for 2 cores: two test binaries at once, each with its own DynamoDB Local.
TEST_P ?= 2
FUZZTIME ?= 5s
LISTEN ?= 127.0.0.1:50051
# The HTTP listener: Prometheus /metrics and the registry page /ui/.
METRICS_LISTEN ?= 127.0.0.1:9464
# The Python SDK uses Debian's interpreter and packages (deploy/dev/install.sh python), never
# a python3 that happens to come first on PATH.
PYTHON ?= /usr/bin/python3
PYSDK := featurestore/client/python

.PHONY: all deps tools build run test test-python lint generate check-generated breaking fuzz-short fuzz bench bench-import bench-python chaos chaos-cluster clean

all: build

## deps: install valkey-server, DynamoDB Local, the Go tools, the Python SDK's packages and
## Chromium (the registry page's browser tests) if missing
deps:
	@bash deploy/dev/install.sh all

build:
	@mkdir -p .build
	$(GO) build -o .build/ ./cmd/...

## run: start DynamoDB Local, ValKey and the server on loopback
run: deps build
	@echo "Starting DynamoDB Local, valkey-server and the feature store on $(LISTEN)..."
	@echo "Try, in another terminal:"
	@echo "  .build/fsctl -addr $(LISTEN) apply deploy/examples/driver_stats.yaml"
	@echo "  .build/fsctl -addr $(LISTEN) write -set driver_stats -entity d42 trips_today=7 rating=4.9"
	@echo "  .build/fsctl -addr $(LISTEN) get -features driver_stats:trips_today,driver_stats:rating -entities d42"
	@echo "  .tools/bin/grpcurl -plaintext $(LISTEN) list"
	@echo "Registry page (read-only, in a browser): http://$(METRICS_LISTEN)/ui/"
	@echo "Ctrl-C stops everything."
	@.build/devstack -dynamodb-port 0 -valkey-port 0 -- .build/featurestore -listen $(LISTEN) -metrics-listen $(METRICS_LISTEN)

## test: everything CI runs: lint, generated-code check, race tests on the real stack, short fuzzing
test: deps lint check-generated breaking
	$(GO) test -race -count=1 -p $(TEST_P) -timeout 15m ./...
	@$(MAKE) --no-print-directory test-python
	@$(MAKE) --no-print-directory fuzz-short

## test-python: the Python SDK's type check (mypy --strict) and tests (pytest, Debian's python3)
## against a real stack they start themselves (devstack, plus a TLS replica)
test-python: deps build
	$(PYTHON) -m mypy --config-file $(PYSDK)/pyproject.toml --cache-dir .build/mypy $(PYSDK)/featurestore
	FS_PYTEST_NO_BUILD=1 $(PYTHON) -m pytest -q $(PYSDK)/tests

## tools: the pinned Go tools only (buf, protoc plugins, grpcurl, staticcheck), if missing
tools:
	@bash deploy/dev/install.sh tools

## lint: buf lint, gofmt, go vet and staticcheck (pinned in deploy/dev/install.sh); a
## finding is fixed, or silenced by a //lint:ignore on its line that says why
lint: tools
	buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

generate:
	buf generate --template proto/buf.gen.yaml
	bash $(PYSDK)/generate.sh

## check-generated: fail if the committed generated code differs from a fresh generation
check-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  buf generate --template proto/buf.gen.yaml -o $$tmp; \
	  if ! diff -r -q $$tmp/proto/featurestore/v1 proto/featurestore/v1 -x '*.proto'; then \
	    echo "generated code is stale: run 'make generate' and commit"; exit 1; fi; \
	  bash $(PYSDK)/generate.sh $$tmp/py; \
	  if ! diff -r -q -x __pycache__ $$tmp/py/featurestore/_proto $(PYSDK)/featurestore/_proto; then \
	    echo "generated Python code is stale: run 'make generate' and commit"; exit 1; fi; \
	  echo "generated code is up to date"

## breaking: the API must stay compatible (buf breaking, FILE rules) with the proto as it was
## before its latest change: against HEAD while the proto has uncommitted edits, else
## against the parent of the last commit that touched it
PROTO := proto/featurestore/v1/featurestore.proto
breaking:
	@if ! git diff --quiet HEAD -- $(PROTO); then base=HEAD; \
	  else last=$$(git rev-list -n1 HEAD -- $(PROTO)); base=$$last~1; fi; \
	  if ! git cat-file -e "$$base:$(PROTO)" 2>/dev/null; then echo "buf breaking: the proto has no earlier version in this clone (shallow?); run from a full clone"; exit 1; fi; \
	  buf breaking --against ".git#ref=$$(git rev-parse $$base)" && echo "buf breaking: compatible with $$(git rev-parse --short $$base)"

FUZZ_TARGETS := ./server:FuzzRPC ./featurestore:FuzzDecodeRow ./featurestore:FuzzLookupCells ./featurestore:FuzzValidateRow ./featurestore:FuzzParseFeatureRef ./featurestore/valkey:FuzzDecodeEnvelope ./featurestore/valkey:FuzzStandaloneReplication \
  ./ingest:FuzzParseEventTime ./ingest:FuzzJSONLRow ./server/ui:FuzzParseSession \
  ./featurestore/client:FuzzUnmarshalColumns ./server:FuzzColumnsReply

# A target whose run ends in "context deadline exceeded" with no failing input is run once
# more: that is Go's fuzzing coordinator timing out on a worker that stalled on a busy
# machine (CI saw it once, with no execs for the last 3 s), not a finding; a real finding
# writes its input under testdata and fails both times.
fuzz-short:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; log=/tmp/fuzz-$$fn.log; \
	  echo "fuzz $$fn ($(FUZZTIME))"; \
	  if ! $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg > $$log 2>&1; then \
	    if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input' $$log; then \
	      echo "  $$fn: the fuzzing coordinator timed out on a stalled worker; running it again"; \
	      $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg > $$log 2>&1 || { cat $$log; exit 1; }; \
	    else cat $$log; exit 1; fi; \
	  fi; \
	  tail -n 1 $$log; done

## fuzz: longer fuzzing (FUZZTIME=2m by default here)
fuzz:
	@$(MAKE) --no-print-directory fuzz-short FUZZTIME=$${FUZZTIME:-2m}

## bench: benchmarks as ratios against baselines measured in the same run
BENCH_COUNT ?= 5
BENCH_TIME ?= 2000x
BENCH_DURATION ?= 3s
# fsbench runs of every scenario; BENCHMARKS.md reports medians of 3 or more.
BENCH_RUNS ?= 1
## bench: the suite (every scenario against its baseline, one run, a Markdown table in
## .build/benchmarks-table.md), then the Go benchmarks: interleaved cached reads, hot-path
## allocations (-benchmem), ingestion lanes, deletion under load
bench: deps
	@mkdir -p .build
	$(GO) run ./cmd/fsbench -duration $(BENCH_DURATION) -runs $(BENCH_RUNS) -out .build/benchmarks-table.md
	$(GO) test -run '^$$' -bench GetFeaturesCached -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) -timeout 30m ./server/ | tee .build/bench.txt
	@awk -f deploy/dev/benchsummary.awk .build/bench.txt
	$(GO) test -run '^$$' -bench GetFeaturesHotPath -benchmem -benchtime 300x -count 1 -timeout 30m ./server/
	$(GO) test -run '^$$' -bench 'ReadHotPath|ReadEndToEnd' -benchmem -benchtime 300x -count 1 -timeout 30m ./server/
	$(GO) test -run '^$$' -bench ReadForms -benchmem -count 1 ./featurestore/
	$(GO) test -run '^$$' -bench Ingest -benchtime 3x -count 1 -timeout 30m ./server/ | tee .build/bench-ingest.txt
	$(GO) test -run '^$$' -bench DeletionUnderLoad -benchtime 1x -count 1 -timeout 30m ./gdpr/ | tee .build/bench-gdpr.txt

## bench-python: the Python SDK's get_features 100 entities x 10 features into a DataFrame,
## columnar vs row-wise, rows/s (BENCHMARKS.md)
bench-python: deps build
	FS_PYTEST_NO_BUILD=1 $(PYTHON) $(PYSDK)/bench/bench_get_features.py

## bench-import: 1M-row Parquet import into a server process: rows/s and its peak RSS
IMPORT_ROWS ?= 1000000
bench-import: deps
	$(GO) test -run '^$$' -bench ImportParquet -benchtime 1x -timeout 90m ./cmd/fsctl/ -args -import.rows=$(IMPORT_ROWS)

## chaos: the long linearizability runs: many seeds against DynamoDB Local, many more
## over the in-memory database, and a replicated ValKey Cluster under failovers (1,000
## histories: 25 seeds x 40 keys); CI runs a short seeded version of each
CHAOS_SEEDS ?= 1-10
CHAOS_DURATION ?= 45s
CHAOS_MEMSEEDS ?= 1-400
CHAOS_MEMDURATION ?= 3s
CHAOS_CLUSTERSEEDS ?= 1-25
CHAOS_CLUSTERDURATION ?= 6s
chaos: deps
	@mkdir -p .build/chaos
	$(GO) test -count=1 -v -timeout 180m -run 'TestChaos$$|TestChaosMemory$$|TestChaosReplicatedCluster$$' ./internal/chaos/ \
	  -args -chaos.seeds=$(CHAOS_SEEDS) -chaos.duration=$(CHAOS_DURATION) \
	  -chaos.memseeds=$(CHAOS_MEMSEEDS) -chaos.memduration=$(CHAOS_MEMDURATION) \
	  -chaos.clusterseeds=$(CHAOS_CLUSTERSEEDS) -chaos.clusterduration=$(CHAOS_CLUSTERDURATION) -chaos.out=$(CURDIR)/.build/chaos \
	  | grep -E '^(chaos (memory |cluster )?total|--- |ok|FAIL|PASS)|chaos seed=.*(violations|FAIL)|violation|inconclusive:' | tee .build/chaos/summary.txt

## chaos-cluster: only the replicated-cluster runs of `make chaos`
chaos-cluster: deps
	@mkdir -p .build/chaos
	$(GO) test -count=1 -v -timeout 60m -run 'TestChaosReplicatedCluster$$' ./internal/chaos/ \
	  -args -chaos.clusterseeds=$(CHAOS_CLUSTERSEEDS) -chaos.clusterduration=$(CHAOS_CLUSTERDURATION) -chaos.out=$(CURDIR)/.build/chaos \
	  | grep -E '^(chaos cluster total|--- |ok|FAIL|PASS)|chaos seed=.*(violations|FAIL)|violation|not injected|inconclusive:' | tee .build/chaos/cluster-summary.txt

clean:
	rm -rf .build

## k8s-schemas: rewrite the Kubernetes JSON schemas `go test ./deploy/` validates the
## manifests against, from the OpenAPI spec in the k8s.io/kubernetes module (Go proxy)
K8S_VERSION ?= v1.37.2
.PHONY: k8s-schemas
k8s-schemas:
	rm -rf deploy/kubernetes/schemas
	$(GO) run ./internal/k8sschema -k8s-version $(K8S_VERSION) -out deploy/kubernetes/schemas deploy/kubernetes/*.yaml
