# Shouwang (守望) — build, demo and test entry points. See README.md.
GO        ?= go
PKG       := ./...
# Core packages run under the race detector in `make test`.
RACE_PKGS := ./schemas/... ./internal/bus/... ./internal/region/... ./internal/ident/... ./capture/...
BIN       := bin/shouwang

.PHONY: all build deps demo test test-go lint fmt-check vet promtool-test bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/shouwang

## deps: install missing Debian packages (mariadb-server, postgresql, prometheus) — as root.
deps:
	./.ci/install-deps

## demo: run the main job on the embedded default (private MariaDB/PostgreSQL, in-memory Kafka)
## until Ctrl-C; `make demo DEMO_FLAGS=--once` exits after the summary (0 when the totals reconcile).
DEMO_FLAGS ?=
demo: deps build
	./$(BIN) demo $(DEMO_FLAGS)

## test: everything CI runs.
test: deps lint test-go promtool-test

lint: fmt-check vet

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKG)

test-go:
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 20m $$($(GO) list $(PKG) | grep -v -E '/(schemas|internal/bus|internal/region|internal/ident|capture)(/|$$)')

promtool-test:
	promtool check rules deploy/prometheus/*.rules.yml
	promtool test rules deploy/prometheus/tests/*.test.yml
	promtool check config deploy/compose/prometheus.yml

## bench: benchmarks whose figures go to docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./...

clean:
	rm -rf bin
