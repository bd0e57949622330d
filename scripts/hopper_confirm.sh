#!/usr/bin/env bash
# The reproduction study's confirmation on Hopper-v4: each search arm's best configuration
# (results/hopper_search_<arm>_best.json, written from the search by scripts/search_table.py)
# retrained on seeds 100-104, which no search trial used, for 300k steps, evaluated every 10k
# steps with 10 episodes. Each arm trains as one population of five (one process, one thread);
# two arms run side by side, one per core. Re-running continues every run where it stopped
# (bin/train resumes from the members' latest common checkpoint); finished runs are left as they are.
#   scripts/hopper_confirm.sh [ARM ...]   (default: every arm whose best configuration exists)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
arms=("$@")
if [ ${#arms[@]} -eq 0 ]; then
    arms=(ddpg smoothie smoothie_kl smoothie_kl_log_variance_lr)
fi
confirm() {
    local arm=$1 best=results/hopper_search_$1_best.json
    if [ ! -f "$best" ]; then
        echo "hopper_confirm.sh: skipping $arm: $best does not exist (its search has not finished)" >&2
        return 0
    fi
    bin/train --env=Hopper-v4 --hparams="$best" --hparam=total_steps=300000 \
        --hparam=eval_interval=10000 --hparam=eval_episodes=10 --hparam=checkpoint_interval=25000 \
        --seeds=100-104 --logdir="runs/confirm/Hopper-v4/$arm"
}
for ((i = 0; i < ${#arms[@]}; i += 2)); do
    confirm "${arms[i]}" &
    first=$!
    if ((i + 1 < ${#arms[@]})); then confirm "${arms[i + 1]}"; fi
    wait "$first"
done
