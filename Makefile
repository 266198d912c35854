# The two commands that matter on a fresh machine (see README):
#   make demo   set up, train the demo runs and serve them in TensorBoard
#   make test   set up and run the whole test suite (what CI runs)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOGDIR ?= runs
PORT ?= 6006
CHROMIUM := /usr/bin/chromium
# torch is pinned to the CPU wheel that lies on the development machines; an
# unpinned torch would pull a multi-gigabyte CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Lower bound of TensorBoard 2.21's protobuf requirement (tests check it).
PROTOBUF_OLDEST := 6.31.1

.PHONY: setup browser demo serve test test-python test-js benchmark proto clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	# The oldest protobuf TensorBoard allows, beside the venv: tests import
	# our generated code under it (the venv itself has the newest).
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/protobuf-oldest "protobuf==$(PROTOBUF_OLDEST)"
	touch $@

# Browser tests drive Debian's chromium (no browser downloads here).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; \
	fi

demo: setup
	$(PY) demo/train.py --logdir $(LOGDIR)
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

serve: setup
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

test: setup browser test-js test-python

test-python: setup
	$(PY) -m pytest -q tests

test-js:
	node --test tests/js/

benchmark: setup
	$(PY) benchmarks/overhead.py --json benchmarks/overhead.json

proto:
	tools/gen_proto.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
