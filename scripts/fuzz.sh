#!/usr/bin/env bash
# Runs a libFuzzer target for one of pulsegate's decoders.
#
# Usage: scripts/fuzz.sh TARGET [SECONDS] [-- extra libFuzzer flags]
#   TARGET   fit, sensors (every sensor decoder) or one sensor profile (ble:2a63, ant:power, …);
#            add more in the table below: product name and seed folder
#   SECONDS  run time, default 60
#   FUZZ_MAX_LEN (environment) longest input, default 8 KiB: larger seeds are cut to it, which keeps
#            the run at ~250 inputs per second (ASan) instead of one (the 2.4 MB fixture).
#
# The target is built with -sanitize=fuzzer,address into its own scratch path (.build/fuzz), so the
# normal debug and release builds are left alone; the first build of a fresh scratch path takes a few
# minutes (dependencies), later ones are incremental. The corpus grows in .build/fuzz/corpus/TARGET
# (seeded from the target's seed folder on each run); crashes are written to
# .build/fuzz/artifacts/TARGET/ and the script exits non-zero. Reproduce one with the plain build:
#   swift build --product fuzz-TARGET && .build/debug/fuzz-TARGET .build/fuzz/artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [-- libFuzzer flags]}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift

# One line per fuzz target: name) product and seed folder (any files below it are seeds).
case "$target" in
  fit) product=fuzz-fit; seeds=Tests/PulseGateFITTests/Fixtures ;;
  # Every sensor decoder (the input's first byte picks one), or one decoder by its profile name.
  sensors) product=fuzz-sensors; seeds=Fuzz/Sensors/seeds ;;
  ble:*|ant:*) product=fuzz-sensors; seeds=Fuzz/Sensors/seeds; export PULSEGATE_FUZZ_PROFILE="$target" ;;
  *) echo "fuzz: unknown target '$target' (known: fit, sensors, ble:2a37 … ant:hrm …)" >&2; exit 2 ;;
esac

scratch=.build/fuzz
# Reuse the main build's fetched repositories so a fresh scratch path does not clone over the network.
if [ ! -d "$scratch/repositories" ] && [ -d .build/repositories ]; then
  mkdir -p "$scratch"
  cp -a .build/repositories "$scratch/"
fi

echo "fuzz: building $product (sanitizers: fuzzer, address) in $scratch" >&2
swift build -c release --scratch-path "$scratch" --product "$product" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING \
  -Xswiftc -enforce-exclusivity=checked 2>&1 | grep -v "warning: Cannot export local symbol" >&2

binary="$scratch/release/$product"
corpus="$scratch/corpus/${target//:/-}"
artifacts="$scratch/artifacts/${target//:/-}"
mkdir -p "$corpus" "$artifacts"
find "$seeds" -type f ! -name '*.md' -exec cp -n {} "$corpus/" \;

echo "fuzz: running $product for ${seconds}s (corpus $corpus, $(ls "$corpus" | wc -l) inputs)" >&2
start=$(date +%s)
status=0
"$binary" "$corpus" -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
  -timeout=10 -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-8192}" "$@" || status=$?
echo "fuzz: $target ran $(( $(date +%s) - start ))s, exit $status; corpus $(ls "$corpus" | wc -l) inputs" >&2
exit "$status"
