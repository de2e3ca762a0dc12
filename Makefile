# pvt_fpn_d2 developer entry points. `make setup` once, then `make test` / `make demo`.
VENV ?= .venv
PY ?= $(VENV)/bin/python
STAMP := $(VENV)/.pvt_fpn_d2-setup-done
SETUP_INPUTS := setup.py tools/constraints.txt tools/requirements-mmdet.txt tools/install_detectron2.py \
	tools/setup_env.sh
# pytest-xdist workers; CI machines have 2 cores
TEST_WORKERS ?= 2

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	VENV=$(VENV) bash tools/setup_env.sh
	touch $@

# Skip the venv when PY points at another interpreter (an existing environment).
SETUP_DEP := $(if $(filter $(VENV)/bin/python,$(PY)),setup,)

# -rs: every skipped test with its reason (a test of ../shared/ data fails, not skips, where it
# exists: tests/conftest.py)
test: $(SETUP_DEP)
	$(PY) -m pytest -n $(TEST_WORKERS) -rs tests

# the main job: synthetic data, CPU training of PVT-v2-b0 Mask R-CNN, evaluation, pictures
demo: $(SETUP_DEP)
	PY=$(PY) bash tools/demo.sh

# caches only: outputs (checkpoints) and datasets are never deleted by make
clean:
	rm -rf .pytest_cache
	find . -name __pycache__ -not -path "./.venv/*" -prune -exec rm -rf {} +
