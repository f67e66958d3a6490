"""launch/bench.py prints its JSON on CPU (tiny sizes)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench(*args, out):
  r = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "bench.py"), *args, f"--out={out}"],
                     cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.load(open(out))


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
             out=str(tmp_path / "c.json"))
  assert [r["name"] for r in c["results"]] == ["certify_jaxdiff", "certify_host_loop_baseline"]
  assert c["speedup_vs_host_loop"] > 0 and c["gflops_per_draw"] > 0


def test_bench_memory_orders_the_remat_policies():
  from jaxdiff.bench.memory import bench_memory
  rows = bench_memory("tiny", 2, "float32", t_bar=3, sampler="ddpm")
  assert [r["name"] for r in rows] == [f"purify_grad_ddpm_t3_remat_{p}" for p in ("none", "step", "dots")]
  temp = {r["name"].rsplit("_", 1)[1]: r["temp_bytes"] for r in rows}
  # keeping every step's activations > keeping conv/matmul outputs per step > keeping only the carry
  assert temp["none"] > temp["dots"] > temp["step"] > 0
  assert all(r["argument_bytes"] > 0 and r["output_bytes"] == 2 * 16 * 16 * 1 * 4 for r in rows)
