# The two entry points of this project (see README.md). Both are idempotent.
.PHONY: demo test lint bench clean

demo:
	@bash scripts/demo.sh

test:
	@bash scripts/test.sh

# Static checks only (ruff, mypy --strict, import-linter), on an existing environment.
lint:
	@bash scripts/test.sh --lint-only

bench:
	@bash scripts/bootstrap.sh bench && .venv/bin/python benchmarks/run_all.py --quick

clean:
	rm -rf .venv .mypy_cache .pytest_cache .ruff_cache .hypothesis build dist
