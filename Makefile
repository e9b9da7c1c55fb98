# Everything runs from the repo's own virtual environment, created on demand.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo release lint bench

setup: $(STAMP)

# The system Python where there is one: the runner drops to another uid, which
# must be able to read the interpreter (pyenv's, under /root, it cannot).
PYTHON := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

# Debian packages: python3-venv for the venv, python3-seccomp for the red-team
# suite's Docker-like confinement (../shared/tools/docker-like), unzip as
# Gradescope unpacks the autograder zip, chromium for the cohort report's
# browser test (driven by playwright, which downloads no browser).
APT_PACKAGES := python3-venv python3-seccomp unzip chromium

# torch first, pinned to the CPU wheel: a bare torch requirement would pull a CUDA build.
$(STAMP): pyproject.toml
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check .

# The answer key first, so that the corpus is graded with it (verdicts must not move).
test: lint
	$(PY) -m autograder key --assignment assignments/krylov_hessian
	$(PY) -m pytest -n auto --dist loadgroup

release: setup
	$(PY) -m autograder release assignments/krylov_hessian --out build/release

# Grade the bundled sample submissions and print each one's per-exercise table.
# One sample of each kind per assignment (Notebook 1, krylov_hessian; Notebook 2, randomized_ntk).
demo: setup
	@$(PY) -m tests.corpus.samples build/demo/submissions
	@for assignment in krylov_hessian randomized_ntk; do \
		for name in solution typical_student unfilled; do \
			echo; echo "== $$assignment/$$name.ipynb"; \
			OMP_NUM_THREADS=1 $(PY) -m autograder grade \
				build/demo/submissions/$$assignment/$$name.ipynb \
				--assignment assignments/$$assignment \
				--out build/demo/$$assignment/$$name || exit 1; \
		done; \
	done
	@echo; echo "feedback: build/demo/<assignment>/<name>/feedback.html"

# Every performance target, each beside floors measured in the same run (~15 min).
bench: setup
	$(PY) benchmarks/grading.py
