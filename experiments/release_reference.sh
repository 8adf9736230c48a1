#!/usr/bin/env bash
# Rebuild the released reference checkpoints (checkpoints/generalist, checkpoints/dynamics) from an
# oracle checkpoint (DexNDM Sec. 3.2-3.3, Appendix C):
#   oracle rollouts (full-length episodes only) -> behaviour-cloned generalist
#   Chaos Box replay of those rollouts in the SOURCE domain -> sim-pretrained joint-wise, finger-wise
#   and whole-hand dynamics.
# Usage: experiments/release_reference.sh ORACLE.pt [WORK_DIR]   (about 30 min on 2 CPU cores)
# INSTALL=0 keeps the results in WORK_DIR only (a study's candidate), leaving checkpoints/ untouched.
set -euo pipefail
ORACLE=${1:?usage: $0 ORACLE.pt [WORK_DIR]}
WORK=${2:-outputs/release}
EPISODES=${EPISODES:-128}          # attempted oracle episodes (only full-length ones are kept)
CHAOS_EPISODES=${CHAOS_EPISODES:-96}
GEN_EPOCHS=${GEN_EPOCHS:-15}
DYN_EPOCHS=${DYN_EPOCHS:-15}
INSTALL=${INSTALL:-1}
mkdir -p "$WORK"

dexndm rollout "checkpoints=[$ORACLE]" episodes="$EPISODES" num_envs=64 out="$WORK/oracle_rollouts.h5" \
  hydra.run.dir="$WORK/rollout"
# width 512 (paper: 1024, `model.hidden=1024`) keeps the released file small (8 MB in float16)
dexndm train experiment=generalist sim_data="$WORK/oracle_rollouts.h5" trainer.max_epochs="$GEN_EPOCHS" \
  model.hidden=512 logger=none hydra.run.dir="$WORK/generalist"
dexndm collect chaos_box --out "$WORK/sim_chaos_box.h5" --episodes "$CHAOS_EPISODES" --envs 32 \
  --domain nominal --source "$WORK/oracle_rollouts.h5" --wrist palm_up
for variant in jointwise fingerwise wholehand; do
  dexndm train experiment="${variant}_pretrain" sim_data="$WORK/sim_chaos_box.h5" \
    trainer.max_epochs="$DYN_EPOCHS" logger=none hydra.run.dir="$WORK/$variant"
done
if [ "$INSTALL" = 0 ]; then
  echo "INSTALL=0: checkpoints/ left as it is; the candidates are under $WORK/*/checkpoints/best-*.ckpt"
  exit 0
fi
mkdir -p checkpoints/generalist checkpoints/dynamics
python experiments/strip_checkpoint.py "$(ls "$WORK"/generalist/checkpoints/best-*.ckpt)" checkpoints/generalist/generalist.ckpt --fp16
for variant in jointwise fingerwise wholehand; do
  python experiments/strip_checkpoint.py "$(ls "$WORK"/$variant/checkpoints/best-*.ckpt)" checkpoints/dynamics/${variant}_sim.ckpt
done
