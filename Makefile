# The two commands of the README. Each sets up .venv first (idempotent, seconds when nothing changed).
.PHONY: demo test setup clean

PY := .venv/bin/python

setup:
	@scripts/setup_env.sh

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m lighthmr_ros.demo

clean:
	rm -rf build demo_out
