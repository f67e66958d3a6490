"""launch/bench.py prints its JSON on CPU (tiny sizes)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench(*args, out):
  r = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "bench.py"), *args, f"--out={out}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.load(open(out))


@pytest.mark.slow  # ~45 s of U-Net compiles and torch.compile; the ops suite runs in the fast tier
def test_bench_unet_and_certify_json(tmp_path):
  d = _bench("--suite=unet", "--size=tiny", "--batch=4", "--iters=1", "--samplers=ddim,ode", "--t_bar=5",
             "--peer=torch", out=str(tmp_path / "u.json"))
  names = [r["name"] for r in d["results"]]
  assert names == ["unet_forward", "train_step", "purify_ddim_t5", "purify_ode_t5"]
  fwd, pur = d["results"][0], d["results"][2]
  assert all(r["images_per_sec"] > 0 for r in d["results"])
  # the peer (diffusers UNet2DModel) runs the same weights: same forward; ratios where it has the row
  assert d["peer_forward_rel_diff"] < 1e-4
  for r in d["results"][:3]:
    assert abs(r["speedup_vs_peer"] - r["peer_seconds_per_call"] / r["seconds_per_call"]) < 1e-9
    assert "diffusers" in r["peer_device"]
  assert d["results"][3]["speedup_vs_peer"] is None  # no PyTorch probability-flow purification loop
  assert pur["network_evals"] == 5 and abs(pur["gflops_per_call"] - 5 * fwd["gflops_per_call"]) < 1e-6
  c = _bench("--suite=certify", "--size=tiny", "--classifier=tiny", "--batch=50", "--n=100", "--iters=1",
             "--peer=torch", "--peer_compile", out=str(tmp_path / "c.json"))
  assert [r["name"] for r in c["results"]] == ["certify_jaxdiff", "certify_host_loop_baseline"]
  assert c["speedup_vs_host_loop"] > 0 and c["gflops_per_draw"] > 0
  # Carlini et al.'s loop on the same weights: the same classifier, the same denoised labels
  assert c["peer_classifier_rel_diff"] < 1e-5 and c["peer_label_agreement"] >= 0.95
  for r in c["results"]:  # --peer_compile: the eager and the compiled peer, both measured in this run
    assert abs(r["speedup_vs_peer"] - r["peer_seconds_per_call"] / r["seconds_per_call"]) < 1e-9
    assert abs(r["speedup_vs_compiled_peer"] - r["compiled_peer_seconds_per_call"] / r["seconds_per_call"]) < 1e-9
    assert "Carlini" in r["peer_device"] and r["peer_device"].endswith(", eager and torch.compile")
  assert c["compiled_peer_draws_per_sec"] > 0 and c["peer_draws_per_sec"] > 0


@pytest.mark.slow  # ~15 s; a benchmark, not a behaviour of the library
def test_bench_certify_carlini_pipeline_json(tmp_path):
  """--pipeline=carlini: the ADM U-Net (learned σ, cosine 4,000) + ViT in timm's layout against the OpenAI
  UNetModel + timm ViT on the same weights, at CPU-test size."""
  c = _bench("--suite=certify", "--pipeline=carlini", "--size=tiny", "--batch=16", "--n=32", "--iters=1",
             "--peer=torch", out=str(tmp_path / "c.json"))
  assert c["pipeline"] == "carlini" and c["classifier"] == "vit_base_patch16_224"
  assert c["peer_classifier_rel_diff"] < 1e-5 and c["peer_label_agreement"] >= 0.95
  for r in c["results"]:
    assert r["n"] == 32 and r["draws_per_sec"] > 0
    assert abs(r["speedup_vs_peer"] - r["peer_seconds_per_call"] / r["seconds_per_call"]) < 1e-9
    assert "OpenAI UNetModel + timm ViT" in r["peer_device"]


@pytest.mark.slow  # ~85 s of PGD and AutoAttack compiles, jaxdiff's and torch's
def test_bench_attack_json(tmp_path):
  a = _bench("--suite=attack", "--size=tiny", "--classifier=tiny", "--batch=2", "--t_bar=3", "--pgd_steps=3",
             "--peer_pgd_steps=1", "--autoattack", "--aa_steps=2", "--aa_queries=3", "--iters=1", "--peer=torch",
             out=str(tmp_path / "a.json"))
  row, aa = a["results"]
  assert row["name"] == "pgd3_purify_ddpm_t3" and row["images_per_sec"] > 0
  assert row["peer_pgd_steps_timed"] == 1  # the peer timed on 1 of 3 steps, scaled
  assert aa["name"] == "autoattack_standard_purify_ddpm_t3" and aa["images_per_sec"] > 0
  assert (aa["steps"], aa["queries"], aa["n_target_classes"]) == (2, 3, 9)
  # the like-for-like condition: fixed purification noise, own predictions as labels, tiny ε -> nothing falls,
  # so both sides ran every attack on every point
  assert aa["robust_after"] == 1.0 and aa["peer_robust_after"] == 1.0
  assert aa["first_call_seconds"] > aa["seconds_per_call"]  # the first call compiles
  assert "torchattacks AutoAttack-standard" in aa["peer_device"]
  for r in (row, aa):
    assert abs(r["speedup_vs_peer"] - r["peer_seconds_per_call"] / r["seconds_per_call"]) < 1e-9


def test_bench_ops_json(tmp_path):
  o = _bench("--suite=ops", "--batch=1", "--iters=1", "--peer=torch", out=str(tmp_path / "o.json"))
  assert [r["name"] for r in o["results"]][:2] == ["conv3x3_128_32x32", "conv3x3_256_16x16"]
  for r in o["results"]:
    assert r["forward_ms"] > 0 and r["fwd_bwd_ms"] > 0
    assert abs(r["speedup_vs_peer"] - r["torch_fwd_bwd_ms"] / r["fwd_bwd_ms"]) < 1e-9
    assert r["peer_device"].startswith("torch ")  # the device the peer ran on, beside its numbers


def test_bench_ops_at_the_digits_shapes():
  from jaxdiff.bench.ops import bench_ops
  rows = bench_ops(2, iters=1, size="digits")
  assert [r["name"] for r in rows] == ["conv3x3_32_16x16", "conv3x3_64_8x8", "conv3x3_64_4x4",
                                       "groupnorm_silu_32_16x16", "attention_64_8x8"]
  assert rows[1]["shape_nhwc"] == [2, 8, 8, 64] and all(r["forward_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in rows)


@pytest.mark.slow  # ~16 s; a benchmark, kept out of the 10-minute fast tier
def test_bench_memory_orders_the_remat_policies():
  from jaxdiff.bench.memory import bench_memory
  rows = bench_memory("tiny", 2, "float32", t_bar=3, sampler="ddpm")
  assert [r["name"] for r in rows] == [f"purify_grad_ddpm_t3_remat_{p}" for p in ("none", "step", "dots")]
  temp = {r["name"].rsplit("_", 1)[1]: r["temp_bytes"] for r in rows}
  # keeping every step's activations > keeping conv/matmul outputs per step > keeping only the carry
  assert temp["none"] > temp["dots"] > temp["step"] > 0
  assert all(r["argument_bytes"] > 0 and r["output_bytes"] == 2 * 16 * 16 * 1 * 4 for r in rows)


@pytest.mark.slow  # ~50 s of AutoAttack compiles
def test_bench_memory_of_autoattack_through_the_purifier():
  """Each AutoAttack program through t̄-step purification (per-step remat, APGD with 20 EOT draws) needs about one
  input gradient's memory, not t̄ steps' or 20 draws' worth."""
  import ml_collections

  from jaxdiff.bench import CLASSIFIERS, unet_config
  from jaxdiff.bench.memory import bench_attack_memory, bench_memory
  ucfg = unet_config("tiny", "float32")
  ccfg = ml_collections.ConfigDict(dict(CLASSIFIERS["tiny"], image_size=16, in_channels=1, num_classes=10))
  (no_remat,) = bench_memory("tiny", 2, "float32", t_bar=6, policies=("none",))
  rows = bench_attack_memory(ucfg, ccfg, 2, t_bar=6, steps=3)
  assert [r["name"] for r in rows] == [f"autoattack_{a}_purify_ddpm_t6" for a in ("apgd_ce", "apgd_dlr", "fab_t",
                                                                                   "square")]
  for r in rows:
    assert 0 < r["temp_bytes"] < no_remat["temp_bytes"], r
