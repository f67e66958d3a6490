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
  d = _bench("--suite=unet", "--size=tiny", "--batch=4", "--iters=1", "--samplers=ddim", "--t_bar=5",
             out=str(tmp_path / "u.json"))
  names = [r["name"] for r in d["results"]]
  assert names == ["unet_forward", "train_step", "purify_ddim_t5"]
  fwd, pur = d["results"][0], d["results"][2]
  assert all(r["images_per_sec"] > 0 for r in d["results"])
  assert pur["network_evals"] == 5 and abs(pur["gflops_per_call"] - 5 * fwd["gflops_per_call"]) < 1e-6
  c = _bench("--suite=certify", "--size=tiny", "--classifier=tiny", "--batch=50", "--n=100", "--iters=1",
             out=str(tmp_path / "c.json"))
  assert [r["name"] for r in c["results"]] == ["certify_jaxdiff", "certify_host_loop_baseline"]
  assert c["speedup_vs_host_loop"] > 0 and c["gflops_per_draw"] > 0
