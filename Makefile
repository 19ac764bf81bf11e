# The two commands of the README's quickstart, and the checks CI runs.
#   make demo   install into .venv, then run the offline demo of the SDK flow
#   make test   install into .venv, then run the whole test suite
#   make reliability   the long runs of the reliability tests (docs/reliability.md)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := sdk8,postgres,mysql,cli,encryption,test

.PHONY: demo test lint install reliability

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m zoho_token_store.demo

test: $(VENV)/.installed
	$(PY) -m pytest -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy

# The reliability tests at their long sizes (ZTS_LONG=1), every backend
# required, then their figures summed from the JUnit report: examples and
# operations, workers, faults injected, failures (divergences), rows lost.
RELIABILITY_TESTS := tests/test_model_based.py tests/test_concurrency.py \
	tests/test_faults.py tests/test_hostile_input.py
RELIABILITY_REPORT := .pytest_cache/reliability-junit.xml

define RELIABILITY_SUMMARY
import collections, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = list(root.iter("testcase"))
figures = collections.Counter()
for case in cases:
    for prop in case.iter("property"):
        figures[prop.get("name")] += int(prop.get("value"))
failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
xfailed = [c for c in cases if (s := c.find("skipped")) is not None and s.get("type") == "pytest.xfail"]
diverged = [c for c in failed if "reference_model" in c.get("name")]
print(f"tests: {len(cases)}, failed: {len(failed)}, xfailed (reported bugs): {len(xfailed)}")
print(f"model-based: {figures['model_examples']} examples, {figures['model_operations']} operations, {len(diverged)} divergences")
print(f"concurrency: {figures['concurrency_operations']} operations by up to 16 workers per run")
print(f"faults: {figures['faults_injected']} injected over {figures['fault_operations']} operations, {figures['fault_operations_failed_after_retry']} failed after the retry; rows lost: {figures['rows_lost']}")
print(f"secrets: {figures['secret_scan_error_paths']} error paths scanned")
sys.exit(1 if failed else 0)
endef
export RELIABILITY_SUMMARY

reliability: $(VENV)/.installed
	ZTS_LONG=1 ZTS_REQUIRE_BACKENDS=1 $(PY) -m pytest -n 2 $(RELIABILITY_TESTS) \
		-o junit_family=xunit1 --junitxml=$(RELIABILITY_REPORT) || true
	$(PY) -c "$$RELIABILITY_SUMMARY" $(RELIABILITY_REPORT)
