#!/usr/bin/env bash
# The reproduction study's confirmation on Hopper-v4: each search arm's best configuration
# (results/hopper_search_<arm>_best.json, written from the search by scripts/search_table.py)
# retrained on fresh seeds (100-104 by default; no search trial used them) for 300k steps,
# evaluated every 10k steps with 10 episodes. Each arm trains as one population of its seeds (one
# process, one thread); two arms run side by side, one per core. Re-running continues every
# unfinished arm where it stopped (bin/train resumes from the members' latest common checkpoint);
# an arm whose runs of these seeds have all exported their final policies is finished and skipped.
#   scripts/hopper_confirm.sh [--seeds=FIRST-LAST] [ARM ...]   (default: seeds 100-104, every arm
#   whose best configuration exists). More seeds for an arm go beside its first five, e.g.
#   --seeds=105-109: bin/report gathers every run below the arm's directory.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
seeds=(100 101 102 103 104)
if [[ ${1:-} == --seeds=* ]]; then
    range=${1#--seeds=}
    if [[ ! $range =~ ^([0-9]+)-([0-9]+)$ ]] || ((10#${BASH_REMATCH[1]} > 10#${BASH_REMATCH[2]})); then
        echo "hopper_confirm.sh: error: --seeds must be FIRST-LAST, e.g. 105-109, got $range" >&2
        exit 2
    fi
    seeds=($(seq "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))"))
    shift
fi
arms=()
for arm in "$@"; do  # each arm once: two processes must never train one directory
    if [[ $arm == -* ]]; then
        echo "hopper_confirm.sh: error: $arm: the only option is --seeds=FIRST-LAST, given first" >&2
        exit 2
    fi
    if [[ " ${arms[*]} " != *" $arm "* ]]; then arms+=("$arm"); fi
done
if [ ${#arms[@]} -eq 0 ]; then
    arms=(ddpg smoothie smoothie_kl smoothie_kl_log_variance_lr)
fi
finished() {  # every member has exported its final policy (bin/train does so at the end)
    local seed
    for seed in "${seeds[@]}"; do
        [ -d "$1/seed$seed/policy" ] || return 1
    done
}
confirm() {
    local arm=$1 best=results/hopper_search_$1_best.json logdir=runs/confirm/Hopper-v4/$1
    if [ ! -f "$best" ]; then
        echo "hopper_confirm.sh: skipping $arm: $best does not exist (its search has not finished)" >&2
        return 0
    fi
    if finished "$logdir"; then
        echo "hopper_confirm.sh: $arm is finished ($logdir)" >&2
        return 0
    fi
    bin/train --env=Hopper-v4 --hparams="$best" --hparam=total_steps=300000 \
        --hparam=eval_interval=10000 --hparam=eval_episodes=10 --hparam=checkpoint_interval=25000 \
        --seeds="${seeds[0]}-${seeds[-1]}" --logdir="$logdir"
}
status=0
for ((i = 0; i < ${#arms[@]}; i += 2)); do
    confirm "${arms[i]}" &
    first=$!
    second=
    if ((i + 1 < ${#arms[@]})); then
        confirm "${arms[i + 1]}" &
        second=$!
    fi
    wait "$first" || status=1
    if [ -n "$second" ]; then wait "$second" || status=1; fi
done
exit $status
