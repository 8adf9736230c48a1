#!/usr/bin/env bash
# Source and target dynamics models that share their bias: fine-tune the sim-pretrained joint-wise model on the
# union of source (nominal) and target Chaos Box data, then fine-tune a copy of it briefly on each domain alone.
# The residual then tracks the source copy's prediction through the target copy (residual.reference), so that
# what the two share (most of their error on the sim's states) cancels.  residual_diagnosis.md, section 5.
#   experiments/pipeline_cylinders_tip/shared_reference.sh TARGET_CHAOS.h5 SOURCE_CHAOS.h5 PRETRAINED.ckpt OUT_DIR
set -euo pipefail
target=$1 source=$2 pretrained=$3 out=$4
union_epochs=${UNION_EPOCHS:-20} split_epochs=${SPLIT_EPOCHS:-8}
common="seed=0 model.hidden=256 model.depth=3 data.window=10 model.delta=True data.batch_size=1024 model.lr=0.0003 \
~callbacks.progress +trainer.enable_progress_bar=false logger=none"
best() { python -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get('best_model_path') or r['last_model_path'])" "$1/result.json"; }
dexndm train experiment=jointwise_finetune real_data="$target" pretrained="$pretrained" out_dir="$out/union" \
    "data.files=[{path:'$target',name:target},{path:'$source',name:source}]" trainer.max_epochs=$union_epochs $common
union=$(best "$out/union")
for side in target source; do
    file=$target; [ $side = source ] && file=$source
    dexndm train experiment=jointwise_finetune real_data="$file" pretrained="$union" out_dir="$out/$side" \
        trainer.max_epochs=$split_epochs $common
done
echo "target model: $(best "$out/target")"
echo "source model (residual.reference): $(best "$out/source")"
