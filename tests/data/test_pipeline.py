import numpy as np
import pytest

from jaxdiff import data


def test_epochs_are_permutations_and_deterministic():
  n, b = 103, 10
  spe = data.steps_per_epoch(n, b)
  seen = np.concatenate([data.batch_indices(n, b, seed=3, step=s) for s in range(spe)])
  assert len(set(seen.tolist())) == spe * b  # no repeats within an epoch
  np.testing.assert_array_equal(data.batch_indices(n, b, 3, 17), data.batch_indices(n, b, 3, 17))
  assert not np.array_equal(data.batch_indices(n, b, 3, 0), data.batch_indices(n, b, 3, spe))  # reshuffled
  assert not np.array_equal(data.batch_indices(n, b, 3, 0), data.batch_indices(n, b, 4, 0))


def test_hosts_split_the_global_batch():
  glob = data.batch_indices(100, 8, 0, 5)
  parts = [data.batch_indices(100, 8, 0, 5, process_index=p, process_count=4) for p in range(4)]
  np.testing.assert_array_equal(np.concatenate(parts), glob)
  with pytest.raises(ValueError, match="divisible"):
    data.batch_indices(100, 6, 0, 0, process_count=4)


def test_host_batches_resume_mid_stream():
  src = data.digits_source("train", 8)
  it = data.host_batches(src, 16, seed=1)
  first = [next(it) for _ in range(5)]
  resumed = next(data.host_batches(src, 16, seed=1, start_step=3))
  assert resumed[0] == 3
  np.testing.assert_array_equal(resumed[1]["image"], first[3][1]["image"])


def test_to_device_shards_over_mesh():
  import jax
  from jaxdiff.parallel import make_mesh
  mesh = make_mesh()
  batch = {"image": np.zeros((8, 4, 4, 1), np.float32), "label": np.arange(8, dtype=np.int32)}
  out = data.to_device(batch, mesh)
  assert out["image"].shape == (8, 4, 4, 1)
  assert len(out["label"].sharding.device_set) == jax.device_count()
  np.testing.assert_array_equal(np.asarray(out["label"]), np.arange(8))
