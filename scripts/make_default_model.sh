#!/usr/bin/env bash
# How the embedded default model (src/napari_seem/model/assets/default_tiny.pt) is made, in two
# stages, never on the development sets:
#   1. one training run from random weights on the two training sets, with the decoder's
#      prompt-similarity term (docs/default_model.md, diagnosis 3), stopped at step STOP_AFTER;
#   2. 2,500 steps of fine-tuning from it with synthetic gray-brightfield smears added
#      (napari_seem.training.synthetic, 120 drawn images, seeded; about 11% of the crops);
# then the evaluation on the development sets and the packaging that writes both stages' records
# and the evaluation into the shipped file.
#
#   bash scripts/make_default_model.sh [DATA_ROOT] [WORK_DIR] [STOP_AFTER]
#
# DATA_ROOT: the shared data folder (default ../shared/data); WORK_DIR: where the run goes (default
# runs/default_tiny); STOP_AFTER: the step of the 30,000-step schedule that stage 2 starts from
# (default 25000, the shipped file's; its lineage's metrics.steps says which). The learning rate
# follows the 30,000-step schedule whatever STOP_AFTER is, so a snapshot of a longer run and a run
# stopped there are the same model.
#
# About 0.7 s per step on 1 thread of this project's 2-core CPU (about 5 hours to step 25000, then
# about 35 minutes for stage 2). Each run checkpoints every 500 steps (WORK/scratch/train_state.pt,
# WORK/smear_ft/train_state.pt) and the same command continues it after an interruption. The
# shipped stage 1 was interrupted at each session's end and resumed; its first ~2,500 steps ran
# with --threads 2, the rest with 1. Training is seeded, but the weights
# are reproduced bit for bit only with the same code revision, torch build and thread count.
#
# Stage 1 alone (step 25000) was shipped before stage 2. The model before it (five stages, the
# first three trained on the development images before they became development sets) is described
# in docs/default_model.md; its script is in git history.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
DATA="${1:-../shared/data}"
WORK="${2:-runs/default_tiny}"
STOP="${3:-25000}"

.venv/bin/napari-seem train --data "$DATA/dsb2018_train:nucleus:1.5" --data "$DATA/usiigaci_train:cell:1" \
    --prompt-similarity --out "$WORK/scratch" --steps 30000 --stop-after "$STOP" --crop 192 --lr 5e-4 \
    --warmup 200 --batch-size 4 --objects-per-image 4 --single-object-fraction 0.4 --max-rounds 3 \
    --generic-fraction 0.1 --grounding-fraction 0.15 --invert 0.15 --threads 1 --snapshots \
    --checkpoint-every 500 --seed 20 --resume --log-every 50

# Stage 2: the smears (a seeded drawing, ~8 minutes), then the fine-tuning.
[ -f "$WORK/smear/labels/smear_119.tif" ] || .venv/bin/python -m napari_seem.training.synthetic "$WORK/smear" --count 120 --seed 0
.venv/bin/napari-seem train --data "$DATA/dsb2018_train:nucleus:1.5" --data "$DATA/usiigaci_train:cell:1" \
    --data "$WORK/smear:nucleus:0.3" --init "$WORK/scratch/model.pt" \
    --prompt-similarity --out "$WORK/smear_ft" --steps 2500 --crop 192 --lr 1e-4 \
    --warmup 100 --batch-size 4 --objects-per-image 4 --single-object-fraction 0.4 --max-rounds 3 \
    --generic-fraction 0.1 --grounding-fraction 0.15 --invert 0.15 --threads 1 --snapshots \
    --checkpoint-every 500 --seed 21 --resume --log-every 50

# Evaluation on the development sets (never trained on), then packaging.
FINAL="$WORK/smear_ft/model.pt"
EVAL=(.venv/bin/napari-seem eval)
"${EVAL[@]}" interactive --checkpoint "$FINAL" --data "$DATA/dsb2018_subset" --data "$DATA/usiigaci_phase_contrast" \
    --max-objects 4 --threads 1 --out "$WORK/eval_dev_interactive.json"
"${EVAL[@]}" propagation --checkpoint "$FINAL" --data "$DATA/usiigaci_t98g_timelapse_pseudogt" --threads 1 \
    --out "$WORK/eval_t98g_propagation.json"
.venv/bin/python benchmarks/default_model_prompts.py --checkpoint "$FINAL" --data "$DATA/dsb2018_subset" \
    --out "$WORK/prompts.json"
.venv/bin/python -m napari_seem.training.release "$FINAL" --stage "$WORK/scratch/model.pt" \
    --eval "$WORK/eval_dev_interactive.json" --eval "$WORK/eval_t98g_propagation.json" --eval "$WORK/prompts.json" \
    --out src/napari_seem/model/assets/default_tiny.pt
