#!/usr/bin/env bash
# Table 1's search on Hopper-v4 for the reproduction study: four arms, 16 trials of 100k steps
# each, one sampler seed, ranked by the second-half mean. Re-running continues every arm where it
# stopped (finished trials are kept; unfinished ones resume from their checkpoints).
#   DDPG was searched with single-run trials (one per core); the other arms as populations of 8
#   trials per process (bin/search --population=8), which draws its configurations in groups.
#   Two one-thread populations side by side make more environment steps per second than one
#   population on both cores (two of 8 members: 704 in all, one of 8: 545; README's Speed), so
#   each population trial reserves one CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--env=Hopper-v4 --trials=16 --max_steps=100000 --score=second_half_mean --seed=0)
runs=runs/search/Hopper-v4
TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
    bin/search "${common[@]}" --cpus_per_trial=1 --hparams=hparams/ddpg.json --logdir=$runs/ddpg
population=(--population=8 --cpus_per_trial=1)
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
bin/search "${common[@]}" "${population[@]}" --hparams=hparams/smoothie.json --logdir=$runs/smoothie
bin/search "${common[@]}" "${population[@]}" --hparams=hparams/smoothie_kl.json --logdir=$runs/smoothie_kl
# Ours, not the paper's: φ on an Adam of its own, its rate searched.
bin/search "${common[@]}" "${population[@]}" --hparams=hparams/smoothie_kl.json \
    --range=log_variance_lr=1e-7:1e-4 --logdir=$runs/smoothie_kl_log_variance_lr
