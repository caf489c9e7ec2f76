# tombstone — developer entry points. See scripts/*.sh for the env vars each takes.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/tombstone

.PHONY: all build run test soak bench fuzz lint fmt vet testenv-up testenv-down deps clean regress

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tombstone

# Throwaway PostgreSQL on 127.0.0.1:55433 + the proxy on 127.0.0.1:6432.
# Extra proxy flags: make run ARGS="--log-level debug"
run:
	scripts/run.sh $(ARGS)

# deps + throwaway PostgreSQL/Redis + go vet + go test; env always torn down.
test:
	scripts/test.sh

# The differential restore tester (TestRestoreModel) with random seeds, run
# after run for SOAK_TIME seconds (default 600); stops at the first failure
# and prints its seed and replay command. e.g. SOAK_TIME=3600 SOAK_SEED=42
soak:
	scripts/soak.sh

# Benchmarks (scripts/bench.sh): pgbench direct vs pgbouncer(-fresh) vs proxy, deletes, undelete, reaper.
# e.g. ROUNDS=5 DURATION=8 BENCH_SECTIONS=pgbench
bench:
	scripts/bench.sh

# PostgreSQL's own regression suite (installed server's version), direct vs
# through the proxy; summary + per-test diffs in regress-out/ (scripts/regress.sh).
# e.g. TOMBSTONE_REGRESS_TESTS="int4 triggers"
regress:
	scripts/regress.sh

# Every FuzzXxx target for FUZZTIME (default 30s) each.
fuzz:
	scripts/fuzz.sh

lint:
	@files="$$(git ls-files -co --exclude-standard '*.go')"; \
	out="$$([ -z "$$files" ] || gofmt -l $$files)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	@files="$$(git ls-files -co --exclude-standard '*.go')"; [ -z "$$files" ] || gofmt -w $$files

vet:
	$(GO) vet ./...

deps:
	scripts/deps.sh

testenv-up:
	scripts/testenv.sh up
	@echo 'now: eval "$$(scripts/testenv.sh env)"'

testenv-down:
	scripts/testenv.sh down

clean:
	rm -rf bin/ .testenv/
	$(GO) clean -testcache
