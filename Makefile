VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= var

.PHONY: setup run test lint bench-ingest

setup:
	./scripts/setup.sh

## Sets up everything, then runs the gateway on embedded defaults (SQLite, local spool, folder destination).
run: setup
	-$(VENV)/bin/vera-gateway donors ensure --data-dir $(DATA)
	$(VENV)/bin/vera-gateway serve --data-dir $(DATA)

## Receive throughput: gateway vs DCMTK storescp vs Orthanc (prints ratios).
bench-ingest: setup
	$(PY) bench/ingest.py

## Sets up everything, then runs the whole test suite (real DCMTK and Orthanc peers).
test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check gateway anonymizer dicom_rules tests bench
