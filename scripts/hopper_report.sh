#!/usr/bin/env bash
# The reproduction study's figures from its confirmation runs (scripts/hopper_confirm.sh): IQM of
# each arm's evaluation returns at 100k, 200k and 300k steps with 95% stratified-bootstrap
# intervals, the probability that each Smoothie arm improves on DDPG, and the IQM learning curves.
# Writes results/reproduction_table.md (with every run's scores), results/reproduction_window_table.md
# (scores averaged over the last five evaluations) and results/reproduction.png; with seeds other
# than the default, results/reproduction_seeds<FIRST>-<LAST>{_table.md,_window_table.md,.png}.
#   scripts/hopper_report.sh [--seeds=FIRST-LAST] [ARM ...]   (default: seeds 100-104, the study's
#   confirmation seeds, and all four arms; DDPG, the baseline, is always in). An arm's runs of
#   other seeds (e.g. --seeds=105-109 of hopper_confirm.sh) are left out unless the range holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=runs/confirm/Hopper-v4
first=100 last=104
if [[ ${1:-} == --seeds=* ]]; then
    range=${1#--seeds=}
    if [[ ! $range =~ ^([0-9]+)-([0-9]+)$ ]] || ((10#${BASH_REMATCH[1]} > 10#${BASH_REMATCH[2]})); then
        echo "hopper_report.sh: error: --seeds must be FIRST-LAST, e.g. 100-109, got $range" >&2
        exit 2
    fi
    first=$((10#${BASH_REMATCH[1]})) last=$((10#${BASH_REMATCH[2]}))
    shift
fi
arms=()
for arm in "$@"; do
    if [[ $arm == -* ]]; then
        echo "hopper_report.sh: error: $arm: the only option is --seeds=FIRST-LAST, given first" >&2
        exit 2
    fi
    if [[ $arm != ddpg && " ${arms[*]} " != *" $arm "* ]]; then arms+=("$arm"); fi
done
if [ ${#arms[@]} -eq 0 ]; then
    arms=(smoothie smoothie_kl smoothie_kl_log_variance_lr)
fi
spec() {  # ARM=DIR/seedFIRST,...,DIR/seedLAST
    local seed dirs=()
    for seed in $(seq "$first" "$last"); do dirs+=("$runs/$1/seed$seed"); done
    local IFS=,
    echo "$1=${dirs[*]}"
}
specs=("$(spec ddpg)")
for arm in "${arms[@]}"; do specs+=("$(spec "$arm")"); done
out=results/reproduction
if ((first != 100 || last != 104)); then out+=_seeds$first-$last; fi
common=(--steps=100000,200000,300000 --baseline=ddpg --reps=5000 --seed=0 --out="$out.png")
bin/report "${specs[@]}" "${common[@]}" --markdown="${out}_table.md" --per_run
# The same with each run's score the mean of its five evaluations in [step - 40k, step]: less
# swayed by one evaluation (Hopper's returns jump by ~1000 between neighbouring evaluations).
bin/report "${specs[@]}" "${common[@]}" --window=40000 --markdown="${out}_window_table.md" --per_run
