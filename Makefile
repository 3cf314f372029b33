# tritone: `make serve` runs Triton (CPU) serving MusicGen, Orpheus-format speech and Chatterbox, and the HTTP gateway;
# `make test` runs the tests.
# Both set up what they need first (virtual environment, packages, the Triton binary, an export).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= facebook/musicgen-small
# the speech checkpoint: random weights follow MODEL's (make serve MODEL=tiny-random serves both tiny)
SPEECH_MODEL ?= $(if $(filter tiny-random small-random,$(MODEL)),$(MODEL),canopylabs/orpheus-3b-0.1-ft)
CHATTERBOX_MODEL ?= $(if $(filter tiny-random small-random,$(MODEL)),$(MODEL),ResembleAI/chatterbox)
REPOSITORY ?= model_repository
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
GATEWAY_PORT ?= 8080
DRAIN_S ?= 15
PYTEST_ARGS ?=
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: serve test export render venv system-packages llamacpp clean

$(BIN)/.installed: pyproject.toml export/requirements-no-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch 2.13.0 is the CPU wheel; numpy<2 keeps the python backend stub working
	$(BIN)/pip install --quiet -e '.[export,test,bench]'
	# only the tritonserver binary and python backend are used from this wheel
	$(BIN)/pip install --quiet --no-deps nvidia-pytriton==0.7.0
	# Chatterbox's reference package (model definitions, export, parity, its baseline), without its pins
	$(BIN)/pip install --quiet --no-deps -r export/requirements-no-deps.txt
	touch $@

venv: $(BIN)/.installed

export: venv
	$(BIN)/python -m tritone.export musicgen --checkpoint $(MODEL) --out $(REPOSITORY)
	$(BIN)/python -m tritone.export orpheus --checkpoint $(SPEECH_MODEL) --out $(REPOSITORY)
	$(BIN)/python -m tritone.export chatterbox --checkpoint $(CHATTERBOX_MODEL) --out $(REPOSITORY)

render: venv
	$(BIN)/python -m tritone.ensemble.triton.render

serve: export
	$(BIN)/python -m tritone.serving --model-repository $(REPOSITORY) --model-config-name cpu \
		--model-control-mode explicit --load-model '*' \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		--gateway-port $(GATEWAY_PORT) --drain-timeout $(DRAIN_S)

# Debian packages the tests use: chromium (the web page, driven by Playwright, which downloads no
# browser), docker-compose (validates docker-compose.yml without an engine), libb64-0d (perf_analyzer),
# postgresql (the job and voice stores' tests run on a real PostgreSQL too: tests/postgres.py)
TEST_DEBS := chromium docker-compose libb64-0d kubectl postgresql  # kubectl: renders deploy/ (kustomize) in the tests
system-packages:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the tests: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: venv system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# llama.cpp's llama-server for the speech benchmark's `--llamacpp` phase, built from the source the
# llama-cpp-python sdist vendors into .cache/llamacpp/ (benchmarks/orpheus/llamacpp_build.py);
# the benchmark builds it itself when it is missing. BENCH_DEBS: what the build needs.
BENCH_DEBS := cmake build-essential
llamacpp: venv
	@missing=$$(for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the llama.cpp build: $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(BIN)/python -m tritone.benchmarks.orpheus.llamacpp_build --jobs 2

clean:
	rm -rf $(VENV) .pytest_cache
	find $(REPOSITORY) -path '*/1/*' ! -name model.py -delete
