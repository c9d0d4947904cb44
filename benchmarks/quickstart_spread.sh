#!/usr/bin/env bash
# The README's CPU quickstart over seeds and thread counts (docs/training.md, "The quickstart: what to
# expect"): bash benchmarks/quickstart_spread.sh OUT_DIR [DATA_ROOT]
# Each setting "seed threads" runs the two quickstart commands with EXT.SEED and EXT.THREADS added;
# every run writes its own run directory under OUT_DIR/out_t<threads>, checkpoints under
# OUT_DIR/ckpts_s<seed>_t<threads>, and prints its epochs to stdout.
set -euo pipefail
out=${1:?usage: bash benchmarks/quickstart_spread.sh OUT_DIR [DATA_ROOT]}
data=${2:-../shared/data}
cd "$(dirname "$0")/.."
export MDISTILLER_EXT_STANDALONE=1
for spec in "0 1" "1 1" "2 1" "0 2"; do
  set -- $spec
  seed=$1 threads=$2
  common="EXT.DATA_ROOT $data EXT.DATA_CACHE $out/data EXT.CKPT_ROOT $out/ckpts_s${seed}_t${threads}"
  common="$common LOG.PREFIX $out/out_t${threads} EXT.SEED $seed EXT.THREADS $threads EXT.PROGRESS False"
  python tools/train.py --cfg configs/cifar10/vanilla/resnet20.yaml SOLVER.EPOCHS 5 EXT.TRAIN_SUBSET 10000 $common
  python tools/train.py --cfg configs/cifar10/dhkd/res20_res8.yaml SOLVER.EPOCHS 5 EXT.TRAIN_SUBSET 10000 $common
done
