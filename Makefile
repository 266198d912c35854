# The two commands that matter on a fresh machine (see README):
#   make demo   set up, train the demo runs and serve them in TensorBoard
#   make test   set up and run the whole test suite (what CI runs), against
#               the newest TensorBoard setup.py allows (.venv) and the oldest
#               (.venv-tb-oldest, the TensorBoard-facing tests only)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOGDIR ?= runs
PORT ?= 6006
CHROMIUM := /usr/bin/chromium
# torch is pinned to the CPU wheel that lies on the development machines; an
# unpinned torch would pull a multi-gigabyte CUDA build.
TORCH_SPEC ?= torch==2.13.0
# setup.py's lower bound for protobuf (our generated code needs it; the
# newest TensorBoard asks for it too). tests/test_packaging.py checks that
# these *_OLDEST values are setup.py's lower bounds.
PROTOBUF_OLDEST := 6.31.1

# TensorBoard is tested at both ends of the range setup.py allows: .venv gets
# the newest release, .venv-tb-oldest the oldest. 2.12.0 is the oldest that
# installs beside protobuf >= 6.31.1 (2.11 and older cap protobuf below 4).
TB_OLDEST := 2.12.0
# The oldest RustBoard every allowed TensorBoard accepts (they all ask for
# tensorboard-data-server >=0.7,<0.8).
TBDS_OLDEST := 0.7.0
# setup.py's lower bound for numpy (TensorBoard <= 2.16 needs numpy < 2 anyway).
NUMPY_OLDEST := 1.23.5
# What TensorBoard 2.12 needs but does not declare: its default.py imports
# pkg_resources (every TensorBoard before 2.21 does; setuptools 82 dropped it)
# and its vendored html5lib imports six (declared from 2.14 on).
TB_OLDEST_UNDECLARED := "setuptools<82" six
OLDEST_VENV ?= .venv-tb-oldest
OLDEST_PY := $(OLDEST_VENV)/bin/python
# The tests whose outcome depends on TensorBoard: the plugin under both
# loaders, damaged and non-finite data, our writer and reader through
# TensorBoard's own event files and loaders, and packaging (the entry point is
# found the way this TensorBoard finds plugins). Not the browser tests nor the
# Lightning / Hugging Face integrations.
TB_OLDEST_TESTS := \
	tests/test_plugin.py \
	tests/test_hardening_damaged.py \
	tests/test_hardening_nonfinite.py \
	tests/test_hardening_load.py \
	tests/test_heatmap_encoding.py \
	tests/test_summary_attention.py \
	tests/test_step_cache.py \
	tests/test_summary.py \
	tests/test_writer.py \
	tests/test_event_records.py \
	tests/test_cli.py \
	tests/test_packaging.py
# Browser tests inside those files: Chromium runs in .venv's suite only.
TB_OLDEST_DESELECT := \
	--deselect tests/test_heatmap_encoding.py::test_card_header_shows_the_exact_range

.PHONY: setup setup-tb-oldest compiler browser demo serve test test-python test-tb-oldest test-js benchmark benchmark-gpu gpu-check proto clean

setup: $(VENV)/.installed $(VENV)/.fused

$(VENV)/.installed: setup.py
	@$(MAKE) --no-print-directory compiler
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	# The oldest protobuf setup.py allows, beside the venv: tests import
	# our generated code under it (the venv itself has the newest).
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/protobuf-oldest "protobuf==$(PROTOBUF_OLDEST)"
	touch $@

# The C extension (adapter/_fused.c, built in place by the editable install):
# rebuilt when its source changes.
$(VENV)/.fused: adapter/_fused.c | $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup-tb-oldest: $(OLDEST_VENV)/.installed

# After .venv (order only): both editable installs write the same egg-info.
$(OLDEST_VENV)/.installed: setup.py Makefile | $(VENV)/.installed
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_PY) -m pip install --quiet --upgrade pip
	$(OLDEST_PY) -m pip install --quiet "$(TORCH_SPEC)"
	# With our own requirements (not --no-deps): pip refuses these pins if
	# setup.py's install_requires excludes any of them.
	$(OLDEST_PY) -m pip install --quiet -e . "tensorboard==$(TB_OLDEST)" "tensorboard-data-server==$(TBDS_OLDEST)" \
	  "protobuf==$(PROTOBUF_OLDEST)" "numpy==$(NUMPY_OLDEST)" $(TB_OLDEST_UNDECLARED) pytest
	touch $@

# The C extension (adapter/_fused.c) needs a C compiler when the package is
# installed; setup installs Debian's gcc with apt when none is found (without
# one the package still installs, and tests/test_fused.py fails to say so).
compiler:
	@if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q gcc; \
	fi

# Browser tests drive Debian's chromium (no browser downloads here).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; \
	fi

demo: setup
	$(PY) demo/train.py --logdir $(LOGDIR)
	$(PY) demo/transformer.py --logdir $(LOGDIR)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

serve: setup
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

# Then the oldest venv is built and tested (well under a minute each). One
# after the other, not in parallel: on two cores the extra load made timing-
# sensitive tests (multi-process teardown, browser) flaky. make fails if
# either suite fails.
test: setup browser test-js test-python test-tb-oldest

test-python: setup
	$(PY) -m pytest -q tests

# Its own basetemp and no cache: it may run beside test-python.
test-tb-oldest: setup-tb-oldest
	$(OLDEST_PY) -m pytest -q -p no:cacheprovider --basetemp=$(OLDEST_VENV)/pytest-tmp \
	  $(TB_OLDEST_TESTS) $(TB_OLDEST_DESELECT)

test-js:
	node --test tests/js/

benchmark: setup
	$(PY) benchmarks/overhead.py --json benchmarks/overhead.json

# The GPU check, one command (on a machine with CUDA): the CUDA tests, the
# host-side ATen calls of a logging step, the ResNet-50 overhead against
# stock logging and a profile of a logging step's host time, each written to
# benchmarks/gpu/ (and printed). `gpu-check` is the same without the venv
# (a GPU machine's own Python: make gpu-check PY=python3).
GPU_OUT ?= benchmarks/gpu
benchmark-gpu: setup
	$(MAKE) gpu-check PY=$(PY) GPU_OUT=$(GPU_OUT)

gpu-check:
	mkdir -p $(GPU_OUT)
	$(PY) -m pytest -q tests/test_watch_cuda.py > $(GPU_OUT)/tests.txt 2>&1; status=$$?; \
	  cat $(GPU_OUT)/tests.txt; exit $$status
	$(PY) benchmarks/host_ops.py --device cuda --json $(GPU_OUT)/host_ops.json
	$(PY) benchmarks/overhead.py --models resnet50 --repeats 5 --slow-steps 4 \
	  --modes plain,hist@1,norm@1,gradstats@1,ours@1,ours@10,ours@100 \
	  --json $(GPU_OUT)/overhead.json > $(GPU_OUT)/overhead.txt 2>&1; status=$$?; \
	  cat $(GPU_OUT)/overhead.txt; exit $$status
	$(PY) benchmarks/profile_step.py --model resnet50 --device cuda --out $(GPU_OUT)/profile.txt

proto:
	tools/gen_proto.sh

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build dist *.egg-info
