#!/usr/bin/env bash
# The GPU/TPU measurements of the performance issue, in one command (run on the accelerator machine):
#   bash scripts/device_bench.sh [OUT_DIR]            # JSON per suite under OUT_DIR (default docs/bench)
# Packages the device image lacks travel as wheels (the device tool's recipe, run here in the repo root):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl flax optax orbax-checkpoint chex ml_collections ...   (each missing package, pinned)
# and there the script installs them from .whl before it runs (carry .whl with the call).
# Suites (bf16 and fp32): U-Net at batch 256 with the torch peer on the same GPU, certification U-Net + ResNet-50
# at N = 10,000 against Carlini et al.'s torch loop on the same weights; PGD-20 through 75-step DDPM purification
# against DiffPure's torch loop (fp32); the per-op table; the memory table of the purification gradient.
# SIZE=tiny runs the same on a CPU in minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-docs/bench}"
SIZE="${SIZE:-cifar}"
mkdir -p "$OUT_DIR"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
PY="${PYTHON:-python3}"
KIND=$($PY -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '_'))")
if [ "$SIZE" = cifar ]; then UBATCH=256; CBATCH=1000; CLS=resnet50; N=10000; ABATCH=32; TBAR=75
else UBATCH=8; CBATCH=50; CLS=tiny; N=200; ABATCH=2; TBAR=5; fi
for dtype in bfloat16 float32; do
  $PY launch/bench.py --suite=unet --size="$SIZE" --batch=$UBATCH --dtype=$dtype --iters=5 --peer=torch \
      --out="$OUT_DIR/${KIND}_unet_${SIZE}_${dtype}.json"
  $PY launch/bench.py --suite=certify --size="$SIZE" --classifier=$CLS --batch=$CBATCH --n=$N --dtype=$dtype \
      --iters=2 --peer=torch --out="$OUT_DIR/${KIND}_certify_${SIZE}_${dtype}.json"
done
$PY launch/bench.py --suite=attack --size="$SIZE" --classifier=$CLS --batch=$ABATCH --t_bar=$TBAR --pgd_steps=20 \
    --peer=torch --out="$OUT_DIR/${KIND}_attack_${SIZE}.json"
$PY launch/bench.py --suite=ops --batch=$UBATCH --peer=torch --out="$OUT_DIR/${KIND}_ops_b${UBATCH}.json"
$PY launch/bench.py --suite=memory --size="$SIZE" --batch=64 --samplers=ddpm --time_batch=8 \
    --out="$OUT_DIR/${KIND}_memory_${SIZE}.json"
