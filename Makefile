# dgsamp: one-command setup. Everything runs inside the project-local .venv.
PY := .venv/bin/python

.PHONY: install demo test test-fast lint

install:            ## create .venv with torch, timm, mmengine, mmcv (compiled ops), mmdet, mmseg, dgsamp
	bash scripts/install.sh

demo: install       ## the main job: ERM on embedded RotatedDigits, domain 75 held out
	$(PY) tools/train.py configs/dg/erm_rotated_digits.py

test: install       ## every test, the slow end-to-end ones included (what CI runs)
	$(PY) -m pytest -m "slow or not slow" -q tests

test-fast:          ## unit tests only
	$(PY) -m pytest -q tests

lint:
	.venv/bin/ruff check .
