#!/usr/bin/env bash
# Shows that `wsbench compare` can be trusted on this machine, by running it
# on the committed HEAD against itself (built with the `regression-demo`
# feature, see src/stacks/demo.rs):
#
#   1. A/A comparisons (no change at all): every verdict should be
#      "no change" or "inconclusive"; any "regression" or "improvement" is a
#      false alarm;
#   2. the head rounds spin SLOW_NS nanoseconds per echoed message in
#      SLOW_STACK, for each value of SLOW_NS: the slowdowns should be flagged
#      for SLOW_STACK and no other stack (small ones may go undetected: that
#      is the smallest detectable slowdown this measures);
#   3. the head rounds make one extra allocation per echoed message in
#      ALLOC_STACK: server_allocs_per_rtt should be flagged, for that stack
#      only.
#
# Usage: scripts/regression-proofs.sh [OUT_DIR]   (default regression-proofs, committed)
# Settings (environment): AA_RUNS (8), SLOW_STACK (axum), SLOW_NS
# ("400", about 3% of axum's round trip), ALLOC_STACK (tokio-websockets),
# and COMPARE_ARGS for extra `wsbench compare` options (e.g. "--rounds 9").
# EVALUATE_ONLY=1 rewrites OUT_DIR/summary.md from the reports already
# there, without running anything; AA_DISTURBED (run numbers, e.g. "4")
# then names A/A runs that something else disturbed: they are shown apart
# and not counted.
#
# Each comparison's Markdown and JSON report and its log are copied to
# OUT_DIR as <name>.md, <name>.json, <name>.log; OUT_DIR/summary.md lists
# what each flagged and whether it is what the comparison should show. The
# script exits non-zero if any expectation failed. About 5 minutes per
# comparison on the 2-core reference machine; the first one includes the
# two builds.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

out=${1:-regression-proofs}
aa_runs=${AA_RUNS:-8}
slow_stack=${SLOW_STACK:-axum}
slow_ns=${SLOW_NS:-400}
aa_disturbed=" ${AA_DISTURBED:-} "
alloc_stack=${ALLOC_STACK:-tokio-websockets}
# shellcheck disable=SC2206 # word splitting of the extra options is wanted
extra=(${COMPARE_ARGS:-})

evaluate_only=${EVALUATE_ONLY:-0}
mkdir -p "$out"
# Absolute: compare runs the binaries from inside its worktrees.
out=$(realpath "$out")
summary=$out/summary.md
if [ "$evaluate_only" = 1 ]; then
    rev="each section's"
    written="$(date -u +%Y-%m-%dT%H:%MZ) from the reports in $(basename "$out")"
else
    rm -f "$out"/*.md "$out"/*.json "$out"/*.log
    cargo build --release --locked -q
    rev=$(git rev-parse --short=10 HEAD)
    written=$(date -u +%Y-%m-%dT%H:%MZ)
fi
wsbench=target/release/wsbench
report=target/wsbench/compare/$rev-$rev
failed=0

{
    echo "# wsbench compare: proofs"
    echo
    echo "Commit ($rev) compared with itself, features regression-demo;"
    echo "options: ${extra[*]:-(defaults)}. Written by scripts/regression-proofs.sh on $written."
    echo
} >"$summary"

# The first comparison builds both sides; the rest reuse its binary (both
# sides are the same commit, so one build serves both).
binary_args=()

# compare NAME [ARGS...]: runs one comparison, keeps its reports, records
# its exit code and flagged rows.
compare() {
    local name=$1
    shift
    local code=0
    if [ "$evaluate_only" = 1 ]; then
        # The exit code compare gave: 1 when it found a regression.
        grep -q '^\*\*0 regression' "$out/$name.md" || code=1
    else
        "$wsbench" compare HEAD HEAD --features regression-demo "${binary_args[@]}" \
            "${extra[@]}" "$@" 2>"$out/$name.log" || code=$?
        if [ "$code" -ge 2 ]; then
            echo "$name: could not build or run (exit $code), see $out/$name.log" >&2
            exit 2
        fi
        cp "$report.md" "$out/$name.md"
        cp "$report.json" "$out/$name.json"
        if [ ${#binary_args[@]} -eq 0 ]; then
            # Kept outside OUT_DIR, which may be committed.
            cp target/wsbench/compare/target/release/wsbench target/wsbench/compare/wsbench-demo
            binary_args=(--base-binary "$PWD/target/wsbench/compare/wsbench-demo"
                --head-binary "$PWD/target/wsbench/compare/wsbench-demo")
        fi
    fi
    last_code=$code
    flagged=$(grep -E "$flagged_verdicts" "$out/$name.md" || true)
    {
        echo "## $name"
        echo
        echo "commit $(sed -n 's/^- base: .* = \([0-9a-f]*\) .*/\1/p' "$out/$name.md"); exit $code; $(verdict_counts "$name"); $(grep -o '[0-9]* s in all' "$out/$name.md")"
        echo
        if [ -n "$flagged" ]; then
            echo "| metric | stack | base | head | ratio | interval | verdict |"
            echo "| --- | --- | ---: | ---: | ---: | --- | --- |"
            echo "$flagged"
        else
            echo "nothing flagged"
        fi
        echo
    } >>"$summary"
}

# expect NAME WHAT OK: records whether an expectation held.
expect() {
    if [ "$3" = yes ]; then
        echo "- expected: $2: **held**" >>"$summary"
    else
        echo "- expected: $2: **FAILED**" >>"$summary"
        failed=1
    fi
    echo >>"$summary"
    echo "$1: $2: $3"
}

# Rows of the Markdown table whose verdict is a regression or an
# improvement (src/compare/report.rs writes "**REGRESSION**" and
# "improvement").
flagged_verdicts='\| (\*\*REGRESSION\*\*|improvement) \|$'

# "0 regressions, 0 improvements, 31 no change, 35 inconclusive", counted
# in the report's table (the log may not be kept).
verdict_counts() {
    local md=$out/$1.md
    local reg imp same inc
    reg=$(grep -cE '\| \*\*REGRESSION\*\* \|$' "$md" || true)
    imp=$(grep -cE '\| improvement \|$' "$md" || true)
    same=$(grep -cE '\| no change \|$' "$md" || true)
    inc=$(grep -cE '\| inconclusive \|$' "$md" || true)
    echo "$reg regressions, $imp improvements, $same no change, $inc inconclusive"
}

# Stacks of the flagged rows of a comparison, one per line.
flagged_stacks() {
    grep -E "$flagged_verdicts" "$out/$1.md" | awk -F'|' '{gsub(/ /, "", $3); print $3}' | sort -u
}

aa_counted=0
aa_verdicts=0
aa_alarms=0
for i in $(seq 1 "$aa_runs"); do
    compare "a-a-$i"
    if [[ "$aa_disturbed" == *" $i "* ]]; then
        echo "- not counted: another process ran on the measuring CPU during part of this comparison" >>"$summary"
        echo >>"$summary"
        continue
    fi
    ok=no
    [ "$last_code" -eq 0 ] && [ -z "$(flagged_stacks "a-a-$i")" ] && ok=yes
    expect "a-a-$i" "nothing flagged, exit 0" "$ok"
    aa_counted=$((aa_counted + 1))
    aa_verdicts=$((aa_verdicts + $(grep -cE '\| (\*\*REGRESSION\*\*|improvement|no change|inconclusive) \|$' "$out/a-a-$i.md" || true)))
    aa_alarms=$((aa_alarms + $(grep -cE "$flagged_verdicts" "$out/a-a-$i.md" || true)))
done
{
    echo "**A/A: $aa_counted comparisons counted, $aa_verdicts verdicts, $aa_alarms false alarms.**"
    echo
} >>"$summary"

for ns in $slow_ns; do
    name="slow-$slow_stack-${ns}ns"
    compare "$name" --head-env "WSBENCH_DEMO_SLOW_STACK=$slow_stack" --head-env "WSBENCH_DEMO_SLOW_NS=$ns"
    others=$(flagged_stacks "$name" | grep -vx "$slow_stack" || true)
    ok=no
    [ -z "$others" ] && ok=yes
    expect "$name" "no stack but $slow_stack flagged" "$ok"
    detected=no
    grep -qE "\| $slow_stack \|.*\| \*\*REGRESSION\*\* \|$" "$out/$name.md" && detected=yes
    echo "- detected ($slow_stack flagged as a regression, exit $last_code): $detected" >>"$summary"
    echo >>"$summary"
    echo "$name: detected: $detected"
done

name="alloc-$alloc_stack"
compare "$name" --head-env "WSBENCH_DEMO_ALLOC_STACK=$alloc_stack"
ok=no
[ "$last_code" -eq 1 ] &&
    grep -qE "^\| server_allocs_per_rtt \(allocs[^)]*\) \| $alloc_stack \|.*\| \*\*REGRESSION\*\* \|$" "$out/$name.md" &&
    [ "$(flagged_stacks "$name")" = "$alloc_stack" ] && ok=yes
expect "$name" "server_allocs_per_rtt of $alloc_stack flagged, no other stack, exit 1" "$ok"

echo "wrote $summary"
exit "$failed"
