# Everything runs from the repo's own virtual environment, created on demand.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo release lint

setup: $(STAMP)

# torch first, pinned to the CPU wheel: a bare torch requirement would pull a CUDA build.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

release: setup
	$(PY) -m autograder release assignments/krylov_hessian --out build/release

# Until the grader exists: execute the master notebook, one torch thread, headless.
demo: setup
	@mkdir -p build/demo
	@echo "executing the master notebook (about 15 s)..."
	@start=$$(date +%s); \
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m jupyter nbconvert --to notebook --execute \
		assignments/krylov_hessian/master/01_krylov.ipynb \
		--output-dir build/demo --output 01_krylov.executed.ipynb --log-level WARN && \
	echo "executed copy: build/demo/01_krylov.executed.ipynb ($$(( $$(date +%s) - start )) s)"
