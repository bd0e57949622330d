#!/usr/bin/env bash
# The reproduction study's figures from its confirmation runs (scripts/hopper_confirm.sh): IQM of
# each arm's evaluation returns at 100k, 200k and 300k steps with 95% stratified-bootstrap
# intervals, the probability that each Smoothie arm improves on DDPG, and the IQM learning curves.
# Writes results/reproduction_table.md (with every run's scores), results/reproduction_window_table.md
# (scores averaged over the last five evaluations) and results/reproduction.png.
#   scripts/hopper_report.sh [ARM ...]   (arms only, no options; default: all four arms, which needs
#   every arm confirmed; DDPG, the baseline, is always in)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=runs/confirm/Hopper-v4
arms=("$@")
if [ ${#arms[@]} -eq 0 ]; then
    arms=(smoothie smoothie_kl smoothie_kl_log_variance_lr)
fi
specs=(ddpg=$runs/ddpg)
for arm in "${arms[@]}"; do
    if [ "$arm" != ddpg ]; then specs+=("$arm=$runs/$arm"); fi
done
common=(--steps=100000,200000,300000 --baseline=ddpg --reps=5000 --seed=0 --out=results/reproduction.png)
bin/report "${specs[@]}" "${common[@]}" --markdown=results/reproduction_table.md --per_run
# The same with each run's score the mean of its five evaluations in [step - 40k, step]: less
# swayed by one evaluation (Hopper's returns jump by ~1000 between neighbouring evaluations).
bin/report "${specs[@]}" "${common[@]}" --window=40000 --markdown=results/reproduction_window_table.md --per_run
