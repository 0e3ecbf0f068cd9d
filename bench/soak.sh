#!/bin/sh
# The robustness suite with every loop run SOAK_SCALE times longer (default 10), then a table
# of its figures: what was tried, how many times, how many failures. docs/robustness.md quotes
# the table of a run. Needs root (chown, mount, mknod, a system user) and strace.
#
#   make soak                      # or: SOAK_SCALE=3 sh bench/soak.sh
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
SOAK_SCALE=${SOAK_SCALE:-10}
FIGURES=${SOAK_FIGURES:-/tmp/secretsync-soak-figures.tsv}
: > "$FIGURES"

started=$(date +%s)
ROBUST_SCALE=$SOAK_SCALE ROBUST_FIGURES=$FIGURES ROBUST_SEED=${ROBUST_SEED:-$started} \
	"$PYTHON" -m pytest -q -p no:cacheprovider tests/robust
status=$?
elapsed=$(( $(date +%s) - started ))

echo
echo "soak: scale $SOAK_SCALE, ${elapsed} s, pytest exit $status; figures in $FIGURES"
printf '%-40s %9s %9s  %s\n' scenario attempts failures notes
awk -F '\t' '{ printf "%-40s %9s %9s  %s\n", $2, $3, $4, $5 }' "$FIGURES"
exit $status
