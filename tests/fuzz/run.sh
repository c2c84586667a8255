#!/usr/bin/env bash
# tests/fuzz/run.sh <build-dir> <seconds-per-target> [libFuzzer flags...]
#
# Runs every fuzz target built in <build-dir> (a MULTIPROC_FUZZ=ON build: <build-dir>/tests/fuzz/
# *_fuzz), one after the other, each for <seconds-per-target> seconds, on a fresh copy of its seed
# corpus tests/fuzz/corpus/<name>/ made in <build-dir>/tests/fuzz/run/<target>/ (the repository
# stays clean; the grown corpus, the log and any crash input stay there for a look afterwards).
# Prints one line per target — executions, coverage (cov:, ft:), corpus size before and after —
# and exits 1 when any target found something: a crash, a sanitizer report (ASan, UBSan, leaks),
# an input slower than 10 s, more than 2048 MB of memory. For each finding it prints the end of
# the log (the report and its stack) and where the input was saved.
# Extra arguments go to every target, e.g. -fork=1 -ignore_crashes=1 to keep fuzzing past a
# finding in a long local run (then every crash input is saved, and the run still fails).
# MULTIPROC_FUZZ_TARGETS=codec_fuzz,segment_header_fuzz runs only those.
# Exit status: 0 clean, 1 a finding, 2 usage or nothing to run.
set -u

if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 <build-dir> <seconds-per-target> [libFuzzer flags...]" >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$build/tests/fuzz" ]; then
  echo "$0: $build/tests/fuzz does not exist: configure $build with -DMULTIPROC_FUZZ=ON (clang)" \
    "and build the multiproc_fuzz target (see tests/fuzz/README.md)" >&2
  exit 2
fi
bindir=$(cd "$build/tests/fuzz" && pwd)

targets=()
for f in "$bindir"/*_fuzz; do
  if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
  if [ -n "${MULTIPROC_FUZZ_TARGETS:-}" ] &&
    ! [[ ",${MULTIPROC_FUZZ_TARGETS}," == *",$(basename "$f"),"* ]]; then
    continue
  fi
  targets+=("$f")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "$0: no fuzz targets${MULTIPROC_FUZZ_TARGETS:+ named $MULTIPROC_FUZZ_TARGETS} in $bindir: configure with -DMULTIPROC_FUZZ=ON (clang) and build" \
    "the multiproc_fuzz target (see tests/fuzz/README.md)" >&2
  exit 2
fi

# UBSan aborts at its first report already (-fno-sanitize-recover); these add its stack.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

count_files() { find "$1" -type f | wc -l; }

failed=0
for target in "${targets[@]}"; do
  name=$(basename "$target")
  dir=$bindir/run/$name
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  seeds=$here/corpus/${name%_fuzz}
  if [ -d "$seeds" ]; then
    cp -R "$seeds/." "$dir/corpus/"
  else
    echo "$name: no seed corpus at $seeds (starting empty)"
  fi
  before=$(count_files "$dir/corpus")
  start=$SECONDS
  # Hard stop well after -max_total_time, in case the target wedges where libFuzzer cannot see.
  (cd "$dir" && exec timeout -k 10 $((seconds + 120)) "$target" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    "$@" "$dir/corpus") >"$dir/log" 2>&1
  status=$?
  elapsed=$((SECONDS - start))
  after=$(count_files "$dir/corpus")
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$dir/log" | tail -n 1)
  if [ -z "$execs" ]; then  # -fork mode prints no final stats: take the last "#<n>" line
    execs=$(grep -oE '^#[0-9]+' "$dir/log" | tail -n 1 | tr -d '#')
  fi
  last=$(grep -E 'cov: [0-9]+' "$dir/log" | tail -n 1)
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+')
  found=$(count_files "$dir/artifacts")
  verdict=ok
  if [ "$status" -ne 0 ] || [ "$found" -ne 0 ]; then
    verdict=FAILED
    failed=1
  fi
  printf '%-24s %-6s %12s execs  cov: %-6s ft: %-6s corpus: %s -> %s files  %ss  (log: %s)\n' \
    "$name" "$verdict" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$before" "$after" "$elapsed" \
    "$dir/log"
  if [ "$verdict" != ok ]; then
    echo "---- $name: exit status $status; the end of its log:"
    grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$dir/log" | tail -n 60
    echo "---- $name: saved inputs, each rerun alone (rerun one with: $target <file>):"
    find "$dir/artifacts" -type f | sort | head -n 20 | while read -r input; do
      echo "$input ($(wc -c <"$input") bytes):"
      (cd "$dir" && timeout -k 5 60 "$target" -timeout=10 -rss_limit_mb=2048 "$input" 2>&1) |
        grep -E 'runtime error|ERROR: |^SUMMARY|^codec_fuzz:|^[a-z_]+_fuzz: ' | head -n 3 |
        sed 's/^/    /'
    done
  fi
done
exit $failed
