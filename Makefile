# Moat: top-level entry points. `make run` and `make test` are the quick start.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
PY := /usr/bin/python3
FUZZ_SECONDS ?= 60
DEMO_DIR ?= var/demo

.PHONY: all deps build asan tsan fuzz-build run test unit unit-asan lint fuzz-replay integration integration-asan integration-tsan bench fuzz clean

all: build

deps:
	@scripts/install-deps

build:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS) -- --no-print-directory

asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS) -- --no-print-directory

# ThreadSanitizer: the broker only (unit tests are single-threaded).
tsan:
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DMOAT_TSAN=ON -DMOAT_TESTS=OFF >/dev/null
	@cmake --build build-tsan -j$(JOBS) --target moat -- --no-print-directory

fuzz-build:
	@CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMOAT_FUZZ=ON -DMOAT_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS) -- --no-print-directory

run: deps build
	@scripts/run-demo $(DEMO_DIR)

# Everything CI runs: style checks, unit tests (plain and ASan+UBSan), the
# fuzz corpus replay and the integration suite with real clients (its
# pytest summary is the last line).
test: deps build asan tsan fuzz-build lint unit unit-asan fuzz-replay integration-asan integration-tsan integration

lint:
	@scripts/check-banned
	@scripts/check-format

unit: build
	@cd build && ctest --output-on-failure -j$(JOBS)

unit-asan: asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j$(JOBS)

fuzz-replay: fuzz-build
	@scripts/fuzz-replay

integration: build
	@MOAT_BIN=$(CURDIR)/build/moat $(PY) -m pytest -q -p no:cacheprovider tests/integration

# The same suite against the ASan+UBSan broker: memory errors and leaks in
# the broker fail it (mqttkit checks the broker's stderr at stop).
integration-asan: asan
	@MOAT_BIN=$(CURDIR)/build-asan/moat ASAN_OPTIONS=detect_leaks=1 \
		$(PY) -m pytest -q -p no:cacheprovider tests/integration

# The threaded paths under ThreadSanitizer: workers, hand-offs, the API
# thread, registry changes, reloads and EST (a data race fails the test:
# mqttkit checks the broker's stderr at stop).
TSAN_TESTS := test_qos test_session test_retained_will test_v5 test_registry_mqtt \
	test_delivery_authz test_registry_api test_api_auth test_api_http test_reload test_est
integration-tsan: tsan
	@MOAT_BIN=$(CURDIR)/build-tsan/moat $(PY) -m pytest -q -p no:cacheprovider \
		$(addprefix tests/integration/,$(addsuffix .py,$(TSAN_TESTS)))

bench: deps build
	@bench/run
	@/usr/bin/python3 bench/revoke-latency 50
	@build/moat-regbench

fuzz: fuzz-build
	@scripts/fuzz-run $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-tsan build-fuzz
