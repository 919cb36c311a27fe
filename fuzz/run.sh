#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), starting from the
# committed seeds, and prints one line per target: executions, coverage
# (libFuzzer's "cov" edges and "ft" features) and corpus size. Exits non-zero
# when a target finds an input that breaks its invariant; the input is in
# fuzz/artifacts/TARGET/, and belongs in fuzz/regressions/TARGET/ once fixed.
#
#   bash fuzz/run.sh            # 30 s per target
#   bash fuzz/run.sh 3600       # an hour per target
#   TARGETS="decode proxy" bash fuzz/run.sh 60
#
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
targets=${TARGETS:-decode header request proxy escape reply}
cargo +nightly fuzz build -O >&2
status=0
for target in $targets; do
  mkdir -p "corpus/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  log="corpus/$target.log"
  if cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    verdict=ok
  else
    verdict="FAILED (see fuzz/$log and fuzz/artifacts/$target/)"
    status=1
  fi
  # The last status line ("#N DONE cov: C ft: F corp: K/...") and the executions.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  corp=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo "?")
  echo "$target: $verdict; ${seconds}s, $execs executions, cov $cov, ft $ft, corpus $corp"
done
exit $status
