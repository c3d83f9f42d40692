#!/usr/bin/env bash
# The one test command: formatting, lints, Rust tests, then the real-client interop, crash and
# corruption suite against a release build of the broker.
#
#   scripts/test.sh                 everything (what CI runs via .ci/run)
#   scripts/test.sh -k kcat         everything, passing extra arguments to pytest
#   SKIP_RUST=1 scripts/test.sh     only build the broker and run the interop suite
#   SKIP_INTEROP=1 scripts/test.sh  only fmt, clippy, cargo test
#
# Exits non-zero if any step fails; later steps still run where they can, so one run shows every
# failure. Ends with one summary line of test counts.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

out_dir="target/test-run"
rm -rf "$out_dir" # the summary must count this run only
mkdir -p "$out_dir"
started=$(date +%s)
declare -a step_names=() step_results=()
failed=0

run_step() {
    # run_step NAME command...: runs the command, tees its output to target/test-run/NAME.log,
    # records ok/FAILED and the duration.
    local name="$1"
    shift
    local t0=$SECONDS
    printf '\n===== %s: %s\n' "$name" "$*"
    "$@" 2>&1 | tee "$out_dir/$name.log"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0))
    step_names+=("$name")
    if [ "$rc" -eq 0 ]; then
        step_results+=("ok (${took}s)")
    else
        step_results+=("FAILED rc=$rc (${took}s)")
        failed=1
    fi
    return "$rc"
}

skip_step() {
    step_names+=("$1")
    step_results+=("skipped: $2")
}

if ! run_step deps scripts/install-test-deps.sh; then
    echo "test dependencies could not be installed; the interop suite cannot run" >&2
fi

if [ -z "${SKIP_RUST:-}" ]; then
    run_step fmt cargo fmt --all -- --check
    run_step clippy cargo clippy --workspace --all-targets -- -D warnings
    run_step cargo-test cargo test --workspace
else
    skip_step rust "SKIP_RUST set"
fi

if [ -z "${SKIP_INTEROP:-}" ]; then
    if run_step build-release cargo build --release -p caudal-cli; then
        export CAUDAL_BIN="$repo_root/target/release/caudal"
        run_step interop .venv/bin/python -m pytest tests/interop \
            --junitxml="$out_dir/interop-junit.xml" "$@"
    else
        skip_step interop "the broker did not build"
        failed=1
    fi
else
    skip_step interop "SKIP_INTEROP set"
fi

# ---- summary ------------------------------------------------------------------------------------
cargo_passed=0
cargo_failed=0
if [ -f "$out_dir/cargo-test.log" ]; then
    while read -r p f; do
        cargo_passed=$((cargo_passed + p))
        cargo_failed=$((cargo_failed + f))
    done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$out_dir/cargo-test.log")
fi
py_passed=0
py_failed=0
py_skipped=0
if [ -f "$out_dir/interop-junit.xml" ] && [ -x .venv/bin/python ]; then
    read -r py_passed py_failed py_skipped < <(.venv/bin/python - "$out_dir/interop-junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - bad - skipped, bad, skipped)
EOF
    )
fi

echo
echo "===== summary ($(( $(date +%s) - started ))s)"
for i in "${!step_names[@]}"; do
    printf '  %-14s %s\n' "${step_names[$i]}" "${step_results[$i]}"
done
printf '  rust tests: %d passed, %d failed; interop tests: %d passed, %d failed, %d skipped\n' \
    "$cargo_passed" "$cargo_failed" "$py_passed" "$py_failed" "$py_skipped"
total_passed=$((cargo_passed + py_passed))
total_failed=$((cargo_failed + py_failed))
echo "tests: ${total_passed} passed, ${total_failed} failed, ${py_skipped} skipped"
exit "$failed"
