# Two commands do all set-up on a fresh Debian machine:
#   make demo   - .venv, pinned dependencies, system libraries, sample models, sample audits into out/
#   make test   - the same set-up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSDEPS_STAMP := .sysdeps-ok
TEST_SYSDEPS_STAMP := .test-sysdeps-ok
# Shared libraries WeasyPrint loads, fonts it renders with, poppler for pdftotext/pdfsig in tests.
DEBIAN_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
# What only the tests need: a PostgreSQL server for the history tests, Chromium for the browser tests (and the
# benchmark's timing of the report's register in a browser).
TEST_DEBIAN_PACKAGES := postgresql chromium
POLICIES := $(wildcard policies/*.yaml)
# Each sample's build.py writes its data split and models; .built marks a complete build.
SAMPLE_MODELS := $(patsubst %/build.py,%/models/.built,$(wildcard sample_audits/*/build.py))

.PHONY: demo test setup sysdeps test-sysdeps samples lock clean bench

# A development signing identity for the demo (reports signed with it say: not for submission).
DEV_IDENTITY := .dev-identity

demo: setup samples $(DEV_IDENTITY)
	@mkdir -p out
	@set -e; for p in $(POLICIES); do \
		name=$$(basename $$p .yaml); \
		echo "==> auditor run $$p --out out/$$name --identity $(DEV_IDENTITY)"; \
		rc=0; $(VENV)/bin/auditor run $$p --out out/$$name --identity $(DEV_IDENTITY) --force || rc=$$?; \
		if [ $$rc -gt 1 ]; then exit $$rc; fi; \
		if [ $$rc -eq 1 ]; then echo "    (exit 1: the audit completed and a finding failed; see the report)"; fi; \
		$(VENV)/bin/auditor verify out/$$name > /dev/null && echo "    verified: auditor verify out/$$name"; \
	done
	@echo "Reports written under out/: open out/<policy>/report.html or report.pdf"

test: setup test-sysdeps samples
	scripts/with-postgres.sh $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

setup: sysdeps $(STAMP)

$(DEV_IDENTITY): | $(STAMP)
	$(VENV)/bin/auditor keys init $(DEV_IDENTITY) --name "auditor demo signer (development)"

sysdeps: $(SYSDEPS_STAMP)

# Installs the Debian packages in $(1) that are missing (apt-get as root, else through sudo).
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

$(SYSDEPS_STAMP):
	$(call apt_install,$(DEBIAN_PACKAGES))
	@touch $@

test-sysdeps: $(TEST_SYSDEPS_STAMP)

$(TEST_SYSDEPS_STAMP):
	$(call apt_install,$(TEST_DEBIAN_PACKAGES))
	@touch $@

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) scripts/check_lock.py
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

samples: setup $(SAMPLE_MODELS)

sample_audits/%/models/.built: sample_audits/%/build.py $(STAMP)
	$(PY) sample_audits/$*/build.py
	@touch $@

lock:
	@{ echo '# Exact versions this project is tested with (pip freeze of .venv), installed with --no-deps and checked'; \
	   echo '# by scripts/check_lock.py. Regenerate with `make lock`.'; \
	   $(PY) -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\(.*\)+cpu/torch==\1/' \
	     | grep -v -i -x -F -f <(grep -v '^#' requirements-bench.lock); } > requirements.lock
	$(PY) scripts/check_lock.py

bench: setup test-sysdeps samples
	$(PY) -m pip install -q --no-deps -r requirements-bench.lock
	$(PY) bench/audit_vs_naive.py

clean:
	rm -rf out .pytest_cache $(SYSDEPS_STAMP) $(TEST_SYSDEPS_STAMP)
