# The two commands of the README. Each one sets up .venv first (idempotent: seconds when done).
PY := .venv/bin/python

.PHONY: setup demo test toy-data

setup:
	@bash tools/setup_env.sh

toy-data: setup
	$(PY) tools/make_toy_data.py

demo: setup
	@bash tools/run_demo.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
