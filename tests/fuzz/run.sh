#!/usr/bin/env bash
# Runs every reader's fuzz target for a bounded time, starting from the seed corpus in
# tests/fuzz/corpus/<reader>. A finding (crash, sanitizer report, leak, timeout) fails the
# run and leaves the input in build-fuzz/findings/.
# usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [BUILD_DIR]
set -uo pipefail
seconds=${1:-30}
build=${2:-build-fuzz}
src=$(cd "$(dirname "$0")" && pwd)
status=0
mkdir -p "$build/findings"
for reader in idx npy safetensors config; do
  bin="$build/tests/fuzz/fuzz_$reader"
  [[ -x "$bin" ]] || { echo "fuzz: $bin is missing; build the fuzz preset first"; exit 2; }
  corpus=$(mktemp -d)
  cp "$src/corpus/$reader/"* "$corpus/"
  if "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$build/findings/${reader}-" "$corpus" > "$build/findings/$reader.log" 2>&1; then
    echo "fuzz_$reader: $(grep -E '^Done' "$build/findings/$reader.log") without a finding"
  else
    echo "fuzz_$reader: FINDING, see $build/findings/$reader.log"
    grep -E "ERROR|SUMMARY|Test unit written" "$build/findings/$reader.log" | head -5
    status=1
  fi
  rm -rf "$corpus"
done
exit $status
