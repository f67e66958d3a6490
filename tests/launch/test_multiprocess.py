"""Two local processes × 2 CPU devices (jax.distributed, as on a TPU pod or a multi-GPU host) give the results
of one process with 4 devices, and write every file once (process 0 is the only writer)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = ["--config=configs/ddpm_digits.py", "--config.train.num_steps=4", "--config.data.image_size=8",
         "--config.model.image_size=8", "--config.model.base_channels=8", "--config.model.channel_mults=(1,)",
         "--config.model.attention_resolutions=()", "--config.model.norm_num_groups=4", "--config.train.batch_size=16",
         "--config.train.log_every=2", "--config.train.checkpoint_every=4", "--config.train.sample_every=0"]
CERTIFY = ["--config=configs/certify_digits.py", "--config.eval.num_examples=3", "--config.certify.sigmas=(0.5,)",
           "--config.certify.n=40", "--config.certify.n0=8", "--config.certify.batch_size=40"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(args, workdir, processes):
  """Starts ``processes`` launch/main.py processes (one jax.distributed job when > 1) on 4 CPU devices in all."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXDIFF_PROGRESS": "0",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={4 // processes}"}
  if processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{_free_port()}", JAX_NUM_PROCESSES=str(processes),
               JAXDIFF_INIT_TIMEOUT="120")
  return [subprocess.Popen([sys.executable, os.path.join(ROOT, "launch", "main.py"), *args, f"--workdir={workdir}"],
                           cwd=ROOT, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for i in range(processes)]


def _wait(procs):
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]


def test_two_processes_equal_one_and_write_once(tmp_path):
  from jaxdiff.convert import load_params
  for args, name in ((TRAIN, "train"), (CERTIFY, "certify")):  # the reference and the 2-process job side by side
    _wait(_start(args, tmp_path / f"{name}1", 1) + _start(args, tmp_path / f"{name}2", 2))
  rows = [json.loads(l) for l in open(tmp_path / "train2" / "metrics.jsonl")]
  assert [r["step"] for r in rows if "loss" in r] == [2, 4]  # each line once
  ref = [json.loads(l) for l in open(tmp_path / "train1" / "metrics.jsonl")]
  np.testing.assert_allclose([r["loss"] for r in rows if "loss" in r], [r["loss"] for r in ref if "loss" in r],
                             rtol=1e-5)
  (_, one), (_, two) = load_params(str(tmp_path / "train1" / "export")), load_params(str(tmp_path / "train2" / "export"))
  for a, b in zip(jax_leaves(one), jax_leaves(two)):  # atol: a near-zero bias moves by reduction-order noise
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # (one Adam step here is 2e-5 to 8e-5)
  tsv1, tsv2 = (open(tmp_path / d / "certify_sigma0.5.tsv").read().splitlines() for d in ("certify1", "certify2"))
  assert len(tsv2) == 4 and len({l.split("\t")[0] for l in tsv2[1:]}) == 3  # header + 3 images, once each
  cols = lambda lines: [l.split("\t")[:5] + l.split("\t")[6:] for l in lines[1:]]  # all but the time column
  assert cols(tsv1) == cols(tsv2)


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
