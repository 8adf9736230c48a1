#!/usr/bin/env bash
# DexNDM Fig. 6 on a target domain: one-step and open-loop errors of joint-wise vs whole-hand dynamics,
# both sim-pretrained (checkpoints/dynamics) and both fine-tuned on the SAME Chaos Box data, evaluated
# in distribution (held-out Chaos Box episodes) and out of distribution (base waves; the generalist's
# task trajectories).  Usage: experiments/fig6_dynamics_ood/run.sh [DOMAIN] [WORK_DIR]  (~10 min, 2 cores)
set -euo pipefail
DOMAIN=${1:-combined}
WORK=${2:-outputs/fig6_$DOMAIN}
dexndm pipeline domain="$DOMAIN" out_dir="$WORK/pipeline" \
  "stages=[sim_rollouts,chaos_box,finetune_jointwise,finetune_wholehand]"
dexndm collect chaos_box --out "$WORK/chaos_heldout.h5" --episodes 16 --envs 16 --domain "$DOMAIN" \
  --source "$WORK/pipeline/sim_rollouts/sim_rollouts.h5" --wrist palm_up --seed 1 --quiet
dexndm collect base_waves --out "$WORK/base_waves.h5" --episodes 32 --envs 16 --domain "$DOMAIN" --wrist palm_up --seed 1 --quiet
dexndm collect task_aware --out "$WORK/task.h5" --episodes 16 --envs 16 --domain "$DOMAIN" \
  --policy generalist:checkpoints/generalist/generalist.ckpt --object-set cuboids --axes +z --wrist palm_up --seed 1 \
  --grasp palm_rest --env max_sag=null --quiet
best() { ls "$WORK"/pipeline/$1/checkpoints/best-*.ckpt 2>/dev/null | head -1 || echo "$WORK/pipeline/$1/checkpoints/last.ckpt"; }
dexndm eval-dynamics --ckpt jointwise_sim=checkpoints/dynamics/jointwise_sim.ckpt \
  --ckpt wholehand_sim=checkpoints/dynamics/wholehand_sim.ckpt \
  --ckpt jointwise_ft="$(best finetune_jointwise)" --ckpt wholehand_ft="$(best finetune_wholehand)" \
  --eval chaos_heldout="$WORK/chaos_heldout.h5" --eval base_waves="$WORK/base_waves.h5" --eval task="$WORK/task.h5" \
  --out "$WORK/report"
