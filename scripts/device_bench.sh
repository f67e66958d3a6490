#!/usr/bin/env bash
# The GPU/TPU measurements of the performance issue, in one command (run on the accelerator machine):
#   bash scripts/device_bench.sh [OUT_DIR]        # one JSON per suite + device_bench.log under OUT_DIR (docs/bench)
# Packages the device image lacks travel as wheels (the device tool's recipe, run here in the repo root):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl ml_collections==1.1.0 diffusers==0.42.1 importlib_metadata    (each package the image lacks)
#   pip wheel --no-deps -w .whl guided-diffusion-sdk==1.0.0   (sdist only on PyPI: the carlini suite's torch peer)
#   python3 -m pip download --no-deps -d .whl torchattacks==3.5.1   (pure Python: the autoattack suite's torch peer)
# and there the script installs them from .whl before it runs (carry .whl with the call).
# Suites (SUITES, space-separated, run in the order given; default all, in this order of priority), each cut
# off when BUDGET_S (default 540 s) runs out so that a lease of fixed length returns what finished:
#   unet_bf16 / unet_fp32      U-Net forward, train step, 75-step purification at batch 256, torch peer on the same GPU
#   certify_bf16 / certify_fp32  certification U-Net + ResNet-50 at N = 10,000 against Carlini et al.'s torch loop
#   attack                     PGD-20 through 75-step DDPM purification against DiffPure's torch loop (fp32; batch 4:
#                              the torch loop keeps ~200 MB of activations per image and network call; it is timed
#                              on 3 of its 20 PGD steps after a warm-up step and scaled: at 150 s it had not finished)
#   autoattack                 AutoAttack-standard through 75-step DDPM purification against torchattacks' port (fp32,
#                              batch 4, every point kept robust; 3 iterations per attack and 20 Square queries: the
#                              per-iteration cost is what compares, AutoAttack's 100 / 5,000 take hours in torch)
#   carlini                    Carlini et al.'s pipeline: improved-diffusion ADM (50M) + ViT-B/16 at 224, bf16, against the
#                              OpenAI UNetModel + timm ViT in their loop (rate at N = 20,000; they certify N = 100,000)
#   ops                        the per-op table
#   unet_sweep                 U-Net forward and train step, bf16, batch 8 / 64 / 512 / 1024 (no purification rows, no
#                              peer): the points of docs/images/bench_unet.png (launch/bench_plots.py)
#   profile                    a jax.profiler trace of the bf16 certification loop (OUT_DIR/profile/), for the issue's
#                              top-kernel summary
# PEER_COMPILE=1 (the default) adds the torch.compile'd peer (max-autotune, channels_last) to the unet, certify, carlini
# and attack rows: speedup_vs_peer stays the eager ratio, speedup_vs_compiled_peer is the compiled one.
# Seen on an H200 (2026-11-28, jax 0.11.2): a suite spends 1.5-3 min, most of it compiling (cuDNN autotuning), so a
# 15-minute lease holds about three; the rows print to the log as they are measured. Second lease: certify_bf16 +
# attack + carlini in 427 s, then unet_fp32 + ops in 222 s (the machine stays warm between calls).
# Third lease (2026-11-29): autoattack's jaxdiff side, cold, did not finish in 300 s (compiling), so its cap is 480 s.
# SIZE=tiny runs the same on a CPU in minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-docs/bench}"
SIZE="${SIZE:-cifar}"
BUDGET_S="${BUDGET_S:-540}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device_bench.log"
START=$(date +%s)
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAXDIFF_PROGRESS=0 PYTHONUNBUFFERED=1  # torch shares the device
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxdiff_bench_cache}"  # cost analysis + run: one compile
PY="${PYTHON:-python3}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
  $PY -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), '| flax', flax.__version__,
'| optax', optax.__version__, '| torch', torch.__version__, torch.cuda.is_available())"; } >>"$LOG" 2>&1
KIND=$($PY -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '_'))")
PC=""; [ "${PEER_COMPILE:-1}" = 1 ] && PC="--peer_compile"
if [ "$SIZE" = cifar ]; then UBATCH=256; CBATCH=1000; CLS=resnet50; N=10000; ABATCH=4; TBAR=75
else UBATCH=8; CBATCH=50; CLS=tiny; N=200; ABATCH=2; TBAR=5; fi

suite() {  # suite NAME CAP_S ARGS...: one bench run, cut at min(CAP_S, time left)
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt 40 ]; then echo "== $name skipped: ${left}s left" | tee -a "$LOG"; return; fi
  [ "$cap" -gt "$left" ] && cap=$left
  local t0=$(date +%s)
  echo "== $name (cap ${cap}s)" >>"$LOG"
  timeout -k 5 "$cap" $PY launch/bench.py "$@" --out="$OUT_DIR/${KIND}_${name}.json" >>"$LOG" 2>&1
  echo "== $name rc=$? in $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}
run_one() {
  case $1 in
  unet_bf16) suite "unet_${SIZE}_b${UBATCH}_bfloat16" 240 --suite=unet --size="$SIZE" --batch=$UBATCH \
    --dtype=bfloat16 --iters=5 --samplers=ddpm,ddim --peer=torch $PC ;;
  certify_bf16) suite "certify_${SIZE}_${CLS}_bfloat16" 180 --suite=certify --size="$SIZE" --classifier=$CLS \
    --batch=$CBATCH --n=$N --dtype=bfloat16 --iters=2 --peer=torch $PC ;;
  carlini) suite "certify_carlini_${SIZE}_bfloat16" 240 --suite=certify --pipeline=carlini --size="$SIZE" \
    --batch=$(( CBATCH / 2 )) --n=$(( N * 2 )) --dtype=bfloat16 --iters=1 --peer=torch $PC ;;
  attack) suite "attack_${SIZE}_pgd20_b${ABATCH}" 240 --suite=attack --size="$SIZE" --classifier=$CLS \
    --batch=$ABATCH --t_bar=$TBAR --pgd_steps=20 --peer=torch --peer_pgd_steps=3 $PC ;;
  autoattack) suite "attack_${SIZE}_autoattack_b${ABATCH}" 480 --suite=attack --size="$SIZE" --classifier=$CLS \
    --batch=$ABATCH --t_bar=$TBAR --pgd_steps=0 --autoattack --aa_steps=3 --aa_queries=20 --iters=1 --peer=torch ;;
  certify_fp32) suite "certify_${SIZE}_${CLS}_float32" 180 --suite=certify --size="$SIZE" --classifier=$CLS \
    --batch=$CBATCH --n=$N --dtype=float32 --iters=2 --peer=torch ;;
  unet_fp32) suite "unet_${SIZE}_b${UBATCH}_float32" 200 --suite=unet --size="$SIZE" --batch=$UBATCH \
    --dtype=float32 --iters=5 --samplers=ddpm,ddim --peer=torch ;;
  ops) suite "ops_b${UBATCH}" 150 --suite=ops --batch=$UBATCH --iters=5 --peer=torch ;;
  unet_sweep) for b in 8 64 512 1024; do suite "unet_${SIZE}_b${b}_bfloat16_sweep" 90 --suite=unet --size="$SIZE" \
    --batch=$b --dtype=bfloat16 --iters=5 --samplers=; done ;;
  profile) suite "certify_${SIZE}_${CLS}_bfloat16_profile" 180 --suite=certify --size="$SIZE" --classifier=$CLS \
    --batch=$CBATCH --n=$N --dtype=bfloat16 --iters=1 --profile="$OUT_DIR/profile" ;;
  *) echo "unknown suite $1" | tee -a "$LOG" ;;
  esac
}
for s in ${SUITES:-unet_bf16 certify_bf16 carlini attack autoattack unet_sweep profile certify_fp32 unet_fp32 ops}; do
  run_one "$s"; done
# Summary: one line per row (name, jaxdiff rate, speedup_vs_peer).
$PY - "$OUT_DIR" "$KIND" <<'PYEOF' | tee -a "$LOG"
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], sys.argv[2] + "_*.json"))):
  d = json.load(open(f))
  for r in d.get("results", []):
    rate = r.get("images_per_sec") or r.get("draws_per_sec") or r.get("items_per_sec")
    print(f"{os.path.basename(f)[:-5]:42s} {r.get('name', '?')!s:34s} rate={rate!s:.8s} s={r.get('seconds_per_call', 0):.4g} "
          f"peer_s={r.get('peer_seconds_per_call', '-')!s:.8s} x_peer={r.get('speedup_vs_peer')!s:.5s} "
          f"x_compiled={r.get('speedup_vs_compiled_peer')!s:.5s} peak={r.get('fraction_of_peak')!s:.5s}")
PYEOF
