# The two entry points of this project (see README.md). Both are idempotent.
.PHONY: demo test lint bench clean

demo:
	@bash scripts/demo.sh

test:
	@bash scripts/test.sh

# Static checks only (ruff, mypy --strict, import-linter), on an existing environment.
lint:
	@bash scripts/test.sh --lint-only

# Every benchmarks/*.py with --quick --json, then one table of their ratios.
bench:
	@bash scripts/bootstrap.sh test,bench && .venv/bin/python scripts/run_benchmarks.py

clean:
	rm -rf .venv .mypy_cache .pytest_cache .ruff_cache .hypothesis build dist
