# Build and check targets. `make deb`, `make image` and `make man` belong to the packaging
# (debian/, ops/systemd/, docs/man/, tests/integration/).

PYTHON ?= /usr/bin/python3
SUITES ?= bookworm trixie

.PHONY: deb image man deps test demo bench soak

# What the command and its tests need, all from Debian's archive; installed only when missing.
# (The packaging targets below install their own build dependencies.)
DEBIAN_PACKAGES = python3 python3-dotenv python3-systemd python3-pytest python3-hypothesis \
	pycodestyle strace systemd-container mmdebstrap util-linux man-db acl e2fsprogs

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian: $$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $$missing; \
	fi

# The whole test suite: the engine, the robustness suite and the .deb on a booted systemd.
test: deps deb
	$(PYTHON) -m pytest tests

# The README's main job on the shipped example, in a scratch copy under /tmp.
demo: deps
	sh docs/examples/run-demo.sh

# The speed figures of issue 2 (no-op run over 100 jobs; 500 changes in a 10,000-line file).
bench: deps
	$(PYTHON) bench/bench_sync.py

# secretsync.deb at the repository root, built by dpkg-buildpackage in a scratch copy of the
# tree: the build's by-products (debian/.debhelper, .pybuild, and the .changes/.buildinfo
# dpkg-buildpackage writes to the parent directory) never land in the work tree or beside it.
# Build dependencies come from Debian's archive, installed only when some are missing. PATH is
# the system's: a python3 earlier on PATH (pyenv, a venv) must not stand in for Debian's.
deb:
	@command -v dpkg-checkbuilddeps >/dev/null || \
		{ apt-get update && apt-get install -y --no-install-recommends dpkg-dev; }
	@dpkg-checkbuilddeps || \
		{ apt-get update && apt-get build-dep -y --no-install-recommends ./; }
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	tar -c --exclude=./.git --exclude=./tests/.cache --exclude=./secretsync.deb \
		--exclude=__pycache__ --exclude=./.pybuild --exclude=./build . \
		| tar -x -C "$$scratch" --one-top-level=src; \
	(cd "$$scratch/src" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b); \
	cp "$$scratch"/secretsync_*_all.deb secretsync.deb
	@dpkg-deb --field secretsync.deb Package Version

# The Debian root file systems the integration test boots (cached in tests/.cache/).
image:
	$(PYTHON) tests/integration/debimage.py $(SUITES)

# Render the man pages the way man-db and lintian do; any groff warning fails.
man:
	@set -e; for page in docs/man/secretsync.8 docs/man/secretsync.conf.5; do \
		out=$$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
			man --warnings -E UTF-8 -l -Tutf8 -Z "$$page" 2>&1 >/dev/null); \
		if [ -n "$$out" ]; then echo "$$page: $$out"; exit 1; fi; \
		echo "$$page: ok"; \
	done

# The robustness suite (tests/robust/) with every loop SOAK_SCALE times longer, then the table
# of attempts and failures that docs/robustness.md quotes. Root only; takes about half an hour.
SOAK_SCALE ?= 10
soak: deps
	SOAK_SCALE=$(SOAK_SCALE) PYTHON=$(PYTHON) sh bench/soak.sh
