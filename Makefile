# audiorep: `make demo` and `make test` work on a fresh machine (they build .venv first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test test-isa test-long fuzz lint format bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, exactly this version: it is the local CPU wheel (anything else pulls CUDA).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench,av,ray]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py
	$(PY) examples/specvqgan_demo.py --out demo_out/specvqgan

test: $(STAMP)
	$(PY) -m pytest -q

# The numeric tests again with torch (ATen), oneDNN and MKL held to lower instruction sets, so
# a tolerance tuned on one CPU fails here too (docs/testing.md). CI runs it after `make test`.
ISA_AVX2    := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
ISA_DEFAULT := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
test-isa: $(STAMP)
	$(ISA_AVX2) $(PY) -m pytest -q -m numeric
	$(ISA_DEFAULT) $(PY) -m pytest -q -m numeric

# Campaigns too long for make test (kill -9 at every commit point: ~10 min on 2 cores).
test-long: $(STAMP)
	$(PY) -m pytest -q -m long

# Coverage-guided fuzzing of the parsers (atheris), FUZZ_SECONDS per target; findings are
# written as crash-* files: fix, then add them to tests/fixtures/fuzz/<target>/.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) -m pip install --quiet atheris
	cd $(VENV) && $(abspath $(PY)) $(abspath tools/fuzz.py) all $(FUZZ_SECONDS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks examples
	$(VENV)/bin/ruff format src tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/bench_vggish.py --batch --markdown bench_out/benchmarks.md
	$(PY) benchmarks/bench_dfl.py --markdown bench_out/dfl.md
	$(PY) benchmarks/bench_fd.py --markdown bench_out/fd.md
	$(PY) benchmarks/bench_corpus.py --memory --markdown bench_out/corpus.md
	$(PY) benchmarks/bench_reader.py --markdown bench_out/reader.md
	$(PY) benchmarks/bench_heads.py --markdown bench_out/heads.md
	$(PY) benchmarks/bench_backbones.py --markdown bench_out/backbones.md
	$(PY) benchmarks/bench_specvqgan_mel.py --markdown bench_out/specvqgan_mel.md
	$(PY) benchmarks/bench_melception.py --batch-sizes 1 8 --markdown bench_out/melception.md
	$(PY) benchmarks/bench_codec.py --markdown bench_out/codec_speed.md
	$(PY) benchmarks/bench_sampling.py --check --markdown bench_out/sampling.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache demo_out bench_out
