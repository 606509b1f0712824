# Thin wrapper so the README's commands stay short; the work is in scripts/.
#   make demo   install what is missing, build, start the local stack and pipeline, run the demo
#   make test   the whole test suite from nothing (what CI runs)
.PHONY: all deps build demo test stack-up stack-down stack-status stack-logs docs format clean

BUILD ?= build

all: build

deps:
	@scripts/install-deps

# librdkafka: Debian 12's source with its prefetch pause, main-loop busy-wait and
# transactional 1 ms registration wait fixed,
# built into .local/ by install-deps (scripts/build-librdkafka prints its prefix at once
# when it is there).
build: deps
	@prefix=$$(scripts/build-librdkafka) && \
	  cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DESCQRS_RDKAFKA_PREFIX=$$prefix >/dev/null
	@cmake --build $(BUILD) -j$$(nproc)

demo: build
	@scripts/demo

test:
	@scripts/test-all

stack-up:
	@scripts/stack up

stack-down:
	@scripts/stack down

stack-status:
	@scripts/stack status

stack-logs:
	@scripts/stack logs

docs: build
	@scripts/gen-config-docs $(BUILD)

format:
	@scripts/check-format --fix

clean:
	rm -rf $(BUILD) build-test build-fuzz
