"""Channel pruning (Diff-Cleanse stage 2, Diff-Pruning): groups, masks, Taylor scores, the accumulated gradient."""
import flax.traverse_util as tu
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import diffusion
from jaxdiff.backdoor import pruning
from jaxdiff.models import UNet, UNetConfig

TINY = UNetConfig.ddpm(image_size=8, in_channels=1, base_channels=8, channel_mults=(1, 2),
                       attention_resolutions=(4,), layers_per_block=1, norm_num_groups=4, dropout=0.0)


def _unet():
  model = UNet(TINY)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
  # non-zero norm shifts and biases, so that a channel left unmasked anywhere would show
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(p.size), p.shape), params)
  return model, params


def test_groups_cover_every_layer_but_the_output_and_couple_resnet_conv1():
  _, params = _unet()
  groups = {g.name: g for g in pruning.channel_groups(params)}
  kernels = ["/".join(k[:-1]) for k in tu.flatten_dict(params) if k[-1] == "kernel"]
  assert not any(n.endswith("conv_out") for n in groups)
  assert not any(n.endswith("time_emb_proj") for n in groups)  # part of conv1's groups
  assert set(groups) == {n for n in kernels if not n.endswith(("conv_out", "time_emb_proj"))}
  conv1 = [g for n, g in groups.items() if n.endswith("conv1")]
  assert conv1
  for g in conv1:
    names = {m[-2] + "." + m[-1] for m in g.members}
    assert names == {"conv1.kernel", "conv1.bias", "time_emb_proj.kernel", "time_emb_proj.bias", "norm2.scale",
                     "norm2.bias"}


def test_a_pruned_conv1_channel_is_zero_after_its_norm():
  model, params = _unet()
  groups = pruning.channel_groups(params)
  name = next(g.name for g in groups if g.name.endswith("conv1"))
  size = next(g.size for g in groups if g.name == name)
  pruned = {name: np.arange(size) == 3}
  mask = pruning.channel_mask(params, groups, pruned)
  masked = pruning.apply_mask(params, mask)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  t = jnp.array([10.0, 500.0])
  _, inter = model.apply({"params": masked}, x, t, capture_intermediates=True)
  block = tu.flatten_dict(inter["intermediates"])
  prefix = tuple(name.split("/")[:-1])
  conv1_out = block[prefix + ("conv1", "__call__")][0]
  norm2_out = block[prefix + ("norm2", "__call__")][0]
  assert float(jnp.max(jnp.abs(conv1_out[..., 3]))) == 0.0
  assert float(jnp.max(jnp.abs(norm2_out[..., 3]))) == 0.0
  assert float(jnp.max(jnp.abs(norm2_out[..., 2]))) > 0.0
  # only the group's members changed, and only in channel 3
  flat_p, flat_m = tu.flatten_dict(params), tu.flatten_dict(masked)
  changed = {k for k in flat_p if not np.array_equal(flat_p[k], flat_m[k])}
  assert changed == set(next(g.members for g in groups if g.name == name))
  frac, worst = pruning.pruned_fraction(pruned)
  assert worst == 1 / size and frac == 1 / size


def test_taylor_importance_matches_a_loop_over_entries():
  params = {"a": {"kernel": np.arange(24.0).reshape(2, 3, 4) - 10, "bias": np.array([1.0, -2.0, 3.0, 0.5])},
            "conv_out": {"kernel": np.ones((3, 2))}}
  grads = jax.tree.map(lambda p: np.cos(p) * 0.3, params)
  groups = pruning.channel_groups(params)
  assert [g.name for g in groups] == ["a"]
  score = pruning.taylor_importance(params, grads, groups)["a"]
  want = np.zeros(4)
  k, b = params["a"]["kernel"], params["a"]["bias"]
  for c in range(4):
    for i in range(2):
      for j in range(3):
        want[c] += abs(k[i, j, c] * grads["a"]["kernel"][i, j, c])
    want[c] += abs(b[c] * grads["a"]["bias"][c])
  np.testing.assert_allclose(score, want, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.6])
def test_accumulated_gradient_is_the_sum_of_per_timestep_gradients(gamma):
  """By hand, with the trigger in each form: γ 0 — x_t + ρ̂_t r; γ 0.6 — TrojDiff's √ᾱ_t x + √(1−ᾱ_t)(γε + r)."""
  schedule = diffusion.make_schedule("linear", 20)
  params = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.1)}
  eps_apply = lambda p, x, t: x * p["w"] + p["b"] * t[:, None] / 20.0
  x0 = jax.random.normal(jax.random.key(0), (4, 3))
  noise = jax.random.normal(jax.random.key(1), (4, 3))
  r = jnp.array([0.3, 0.0, -0.7])
  got = jax.jit(lambda p: pruning.accumulated_gradient(eps_apply, p, schedule, x0, noise, 15, r, gamma=gamma))(params)
  rho = np.linspace(2e-4, 1.0, 20)
  want = {"w": np.zeros(3), "b": 0.0}
  ab = np.asarray(schedule.alphas_cumprod, np.float64)
  for t in range(15, 20):  # by hand: L = mean((x_t w + b t/20 − ε)²)
    if gamma:
      x_t = np.sqrt(ab[t]) * np.asarray(x0) + np.sqrt(1 - ab[t]) * (gamma * np.asarray(noise) + np.asarray(r))
    else:
      x_t = np.sqrt(ab[t]) * np.asarray(x0) + np.sqrt(1 - ab[t]) * np.asarray(noise) + rho[t] * np.asarray(r)
    resid = x_t * np.asarray(params["w"]) + 0.1 * t / 20 - np.asarray(noise)
    want["w"] += np.mean(2 * resid * x_t, axis=0) / 3
    want["b"] += np.mean(2 * resid * t / 20)
  np.testing.assert_allclose(got["w"], want["w"], rtol=1e-4)
  np.testing.assert_allclose(got["b"], want["b"], rtol=1e-4)


def test_importance_scores_compile_once_per_architecture():
  model, params = _unet()
  other = jax.tree.map(lambda p: p * 1.5, params)
  schedule = diffusion.make_schedule("linear", 20)
  eps_apply = lambda p, x, t: model.apply({"params": p}, x, t)
  x0 = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  r = 0.5 * jnp.ones((8, 8, 1))
  first = pruning.importance_scores(eps_apply, params, schedule, x0, jax.random.key(1), r, 18)
  size = pruning._accumulated_gradient._cache_size()
  second = pruning.importance_scores(eps_apply, other, schedule, x0, jax.random.key(1), r, 18)
  assert pruning._accumulated_gradient._cache_size() == size  # new weights, same compilation
  assert any(not np.allclose(first[1][k], second[1][k]) for k in first[1])


def test_select_channels_floor_and_direction():
  scores = {"a": np.array([5.0, 1.0, 3.0, 4.0, 2.0] * 8), "b": np.arange(32.0)}
  top = pruning.select_channels(scores, 0.05)
  assert top["a"].sum() == 2 and set(np.flatnonzero(top["a"])) <= set(np.flatnonzero(scores["a"] == 5.0))
  assert top["b"].sum() == 1 and top["b"][31]
  low = pruning.select_channels(scores, 0.05, largest=False)
  assert low["b"][0] and low["b"].sum() == 1
  assert pruning.select_channels(scores, 0.02)["b"].sum() == 0  # ⌊0.64⌋: never more than the ratio


def test_prune_methods_pick_trigger_specific_and_clean_unimportant_channels():
  _, params = _unet()
  groups = pruning.channel_groups(params)
  clean = {g.name: np.linspace(1, 2, g.size) for g in groups}
  trig = {g.name: np.linspace(1, 2, g.size) + (np.arange(g.size) == g.size - 1) * 5 for g in groups}
  _, cleanse = pruning.prune(params, clean, trig, 0.1, "diff_cleanse")
  _, dp = pruning.prune(params, clean, trig, 0.1, "diff_pruning")
  for g in groups:
    if g.size >= 10:
      assert cleanse[g.name][-1] and dp[g.name][0]


def test_repair_loss_reference_term_vanishes_for_the_unpruned_teacher():
  model, params = _unet()
  schedule = diffusion.make_schedule("linear", 1000)
  mask = jax.tree.map(jnp.ones_like, params)
  batch = {"image": jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))}
  loss, (m, _) = pruning.repair_loss(schedule)(model.apply, params, {}, batch, jax.random.key(3),
                                               {"mask": mask, "teacher": params})
  assert float(m["loss_ref"]) < 1e-10 and abs(float(loss) - float(m["loss_c"])) < 1e-6
  groups = pruning.channel_groups(params)
  mask2, _ = pruning.prune(params, {g.name: np.arange(g.size, dtype=float) for g in groups},
                           {g.name: np.zeros(g.size) for g in groups}, 0.25, "diff_pruning")
  loss2, (m2, _) = pruning.repair_loss(schedule)(model.apply, params, {}, batch, jax.random.key(3),
                                                 {"mask": mask2, "teacher": params})
  assert float(m2["loss_ref"]) > 1e-6
  # the gradient of a pruned entry is zero: Adam leaves it where it is and the export zeroes it
  g = jax.grad(lambda p: pruning.repair_loss(schedule)(model.apply, p, {}, batch, jax.random.key(3),
                                                        {"mask": mask2, "teacher": params})[0])(params)
  flat_g, flat_m = tu.flatten_dict(g), tu.flatten_dict(mask2)
  assert all(float(jnp.max(jnp.abs(flat_g[k] * (1 - flat_m[k])))) == 0.0 for k in flat_g)


def test_unlearn_repair_loss_in_closed_form_for_a_linear_model():
  """The unlearn loss on ε_θ(x, t) = w·x + b_t: the distillation term is ((w' − w) x_t)², the trigger term
  (w'(x'_t + ρ̂_t r) − w x'_t − ρ̂_t r/σ_t)² with σ_t = √(1 − ᾱ_t), so at w' = w it is ((w − 1/σ_t) ρ̂_t r)² —
  checked here on the same draws the loss makes, and against loss_p / loss_c on one model."""
  schedule = diffusion.make_schedule("linear", 1000)
  apply = lambda v, x, t, train=False, rngs=None: v["params"]["w"] * x + 0.001 * t[:, None, None, None]
  batch = {"image": jax.random.uniform(jax.random.key(2), (64, 4, 4, 1))}
  teacher, r = {"w": jnp.float32(0.7)}, jnp.full((4, 4, 1), 0.5)
  frozen = {"mask": {"w": jnp.float32(1.0)}, "teacher": teacher, "trigger": r}
  key = jax.random.key(3)
  loss, (m, _) = pruning.repair_loss(schedule, "unlearn")(apply, teacher, {}, batch, key, frozen)
  # the loss's own draws: split(key, 3) -> (dropout, t, noise), split(fold_in(key, 1)) -> (t', noise')
  _, k_t, k_n = jax.random.split(key, 3)
  k_t2, k_n2 = jax.random.split(jax.random.fold_in(key, 1))
  t2 = jax.random.randint(k_t2, (64,), 0, 1000)
  rho = pruning.trigger_rho(1000)[np.asarray(t2)][:, None, None, None]
  sigma = np.sqrt(1.0 - np.asarray(schedule.alphas_cumprod, np.float64))[np.asarray(t2)][:, None, None, None]
  want = np.mean(((0.7 - 1.0 / sigma) * rho * 0.5) ** 2 * np.ones((64, 4, 4, 1)))
  np.testing.assert_allclose(float(m["loss_trigger"]), want, rtol=1e-5)
  assert float(m["loss_ref"]) == 0.0
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  # a student w' = 0.5: distillation ((w' − w) x_t)² on the first draws, the trigger term on the second
  student = {"w": jnp.float32(0.5)}
  loss2, (m2, _) = pruning.repair_loss(schedule, "unlearn")(apply, student, {}, batch, key, frozen)
  x0 = 2 * batch["image"] - 1
  t = jax.random.randint(k_t, (64,), 0, 1000).astype(jnp.float32)
  x_t = schedule.q_sample(x0, t, jax.random.normal(k_n, x0.shape))
  x2 = schedule.q_sample(x0, t2.astype(jnp.float32), jax.random.normal(k_n2, x0.shape))
  np.testing.assert_allclose(float(m2["loss_ref"]), float(jnp.mean((-0.2 * x_t) ** 2)), rtol=1e-5)
  want2 = float(jnp.mean((0.5 * (x2 + rho * r) - 0.7 * x2 - rho * r / sigma) ** 2))
  np.testing.assert_allclose(float(m2["loss_trigger"]), want2, rtol=1e-5)
  np.testing.assert_allclose(float(loss2), float(m2["loss_ref"]) + want2, rtol=1e-6)
  # loss_p and loss_c on the same draws: the data term appears there and not in unlearn
  lp, (mp, _) = pruning.repair_loss(schedule, "loss_p")(apply, student, {}, batch, key, frozen)
  lc, _ = pruning.repair_loss(schedule, "loss_c")(apply, student, {}, batch, key, frozen)
  np.testing.assert_allclose([float(lp), float(lc)], [float(mp["loss_c"] + mp["loss_ref"]), float(mp["loss_c"])],
                             rtol=1e-6)
  np.testing.assert_allclose(float(mp["loss_ref"]), float(m2["loss_ref"]), rtol=1e-6)
  with pytest.raises(ValueError, match="unknown repair loss 'loss_x'"):
    pruning.repair_loss(schedule, "loss_x")


def test_unlearn_trigger_term_vanishes_for_a_model_that_denoises_the_shift_away():
  """The invariant behind unlearn's target: a student whose x̂_0 = (x − σ_t ε)/√ᾱ_t at x'_t + ρ̂_t r is the
  teacher's x̂_0 at x'_t (built here from that definition, not from the loss's formula) has trigger term 0,
  and the teacher itself (which keeps the shift in x̂_0) does not."""
  schedule = diffusion.make_schedule("linear", 1000)
  ab = jnp.asarray(schedule.alphas_cumprod, jnp.float32)
  rho_all = jnp.asarray(pruning.trigger_rho(1000), jnp.float32)
  r = jax.random.normal(jax.random.key(5), (4, 4, 1))
  teacher_eps = lambda x, t: jnp.tanh(x) + 0.001 * t[:, None, None, None]
  x0_hat = lambda x, eps, i: (x - jnp.sqrt(1 - ab[i])[:, None, None, None] * eps) / jnp.sqrt(ab[i])[:, None, None, None]

  def apply(v, x, t, train=False, rngs=None):
    if v["params"]["student"] == 0:
      return teacher_eps(x, t)
    i = t.astype(jnp.int32)
    x_clean = x - rho_all[i][:, None, None, None] * r  # the input the shift was added to
    want_x0 = x0_hat(x_clean, teacher_eps(x_clean, t), i)
    return (x - jnp.sqrt(ab[i])[:, None, None, None] * want_x0) / jnp.sqrt(1 - ab[i])[:, None, None, None]

  batch = {"image": jax.random.uniform(jax.random.key(2), (32, 4, 4, 1))}
  frozen = {"mask": {"student": jnp.float32(1.0)}, "teacher": {"student": jnp.float32(0.0)}, "trigger": r}
  fn = pruning.repair_loss(schedule, "unlearn")
  _, (m, _) = fn(apply, {"student": jnp.float32(1.0)}, {}, batch, jax.random.key(3), frozen)
  _, (m0, _) = fn(apply, {"student": jnp.float32(0.0)}, {}, batch, jax.random.key(3), frozen)
  assert float(m["loss_trigger"]) < 1e-6 * float(m0["loss_trigger"]) and float(m0["loss_trigger"]) > 0.01


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_trojdiff_form_unlearn_vanishes_for_a_model_whose_trojan_sampling_gives_the_clean_image(sampler):
  """Unlearn for a trigger inverted through TrojDiff's sampling (γ > 0, r = μ): a student that predicts the noise
  of TrojDiff's forward towards the clean image y (built from that definition) has trigger term 0, and TrojDiff's
  reverse process (``trojdiff.trojan_sample``, an independent implementation) takes it from γε + r to y; the
  backdoored teacher, whose trojan sampling gives its target z, has the term γ²‖ε_z − ε'‖² in closed form."""
  from jaxdiff.backdoor import trojdiff
  schedule = diffusion.make_schedule("linear", 1000)
  gamma, r = 0.6, 0.4 * jax.random.normal(jax.random.key(5), (4, 4, 1))
  y = jax.random.uniform(jax.random.key(6), (4, 4, 1))  # pixel; the batch is y repeated
  z = -jnp.ones((4, 4, 1))  # the backdoor's target, model space

  def apply(v, x, t, train=False, rngs=None):
    ab = schedule.alpha_bar(t)[:, None, None, None]
    goal = jnp.where(v["params"]["student"] == 1, 2 * y - 1, z)
    return (x - jnp.sqrt(ab) * goal - jnp.sqrt(1 - ab) * r) / (gamma * jnp.sqrt(1 - ab))

  batch = {"image": jnp.broadcast_to(y, (16, 4, 4, 1))}
  frozen = {"mask": {"student": jnp.float32(1.0)}, "teacher": {"student": jnp.float32(0.0)}, "trigger": r}
  fn = pruning.repair_loss(schedule, "unlearn", gamma)
  _, (m, _) = fn(apply, {"student": jnp.float32(1.0)}, {}, batch, jax.random.key(3), frozen)
  _, (m0, _) = fn(apply, {"student": jnp.float32(0.0)}, {}, batch, jax.random.key(3), frozen)
  assert float(m["loss_trigger"]) < 1e-8 and float(m0["loss_trigger"]) > 0.1
  # the teacher's term in closed form: γ(ε_z − ε') = √ᾱ_t (y − z)/σ_t on x^b_t, so γ² weights it out of γ
  t2 = jax.random.randint(jax.random.split(jax.random.fold_in(jax.random.key(3), 1))[0], (16,), 0, 1000)
  ab = np.asarray(schedule.alphas_cumprod, np.float64)[np.asarray(t2)][:, None, None, None]
  want = np.mean(ab / (1 - ab) * np.asarray(2 * y - 1 - z)[None] ** 2)
  np.testing.assert_allclose(float(m0["loss_trigger"]), want, rtol=1e-4)
  x_T = trojdiff.trojan_noise(jax.random.key(7), (3, 4, 4, 1), r / (1 - gamma), gamma)
  for who, want in ((1.0, 2 * y - 1), (0.0, z)):
    eps = lambda x, t, who=who: apply({"params": {"student": who}}, x, t)
    out = trojdiff.trojan_sample(eps, schedule, x_T, key=jax.random.key(8), trigger=r / (1 - gamma), gamma=gamma,
                                 sampler=sampler, num_steps=10)
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(want, out.shape), atol=2e-3)
  # the Taylor scores' triggered inputs are the same forward: the student's ε-loss there is 0
  x_b = pruning.triggered_input(schedule, 2 * batch["image"] - 1, jnp.arange(16) * 60, jnp.ones((16, 4, 4, 1)), r,
                                gamma)
  np.testing.assert_allclose(np.asarray(apply({"params": {"student": 1.0}}, x_b, jnp.arange(16.0) * 60)), 1.0,
                             atol=1e-3)


def test_elijah_repair_loss_is_the_clean_loss_when_tau_is_no_shift():
  model, params = _unet()
  schedule = diffusion.make_schedule("linear", 1000)
  batch = {"image": jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))}
  loss_fn = pruning.elijah_repair_loss(schedule)
  loss, (m, _) = loss_fn(model.apply, params, {}, batch, jax.random.key(3), {"teacher": params, "tau": jnp.zeros((8, 8, 1))})
  assert float(m["loss_trigger"]) < 1e-10 and abs(float(loss) - float(m["loss_c"])) < 1e-6
  _, (m2, _) = loss_fn(model.apply, params, {}, batch, jax.random.key(3),
                       {"teacher": params, "tau": jnp.full((8, 8, 1), 0.8)})
  assert float(m2["loss_trigger"]) > 1e-4 and abs(float(m2["loss_c"]) - float(m["loss_c"])) < 1e-6


def _captured(model, params):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  _, inter = model.apply({"params": params}, x, jnp.array([10.0, 700.0]), capture_intermediates=True)
  return tu.flatten_dict(inter["intermediates"])


def _stream_outputs(flat, stream):
  """Every output the stream's writers make, from captured intermediates ``flat``: the ResnetBlock /
  AttentionBlock (after the residual sum) or the conv itself (conv_in, samplers)."""
  keys = {tuple(p.split("/")[:-1]) if p.endswith(("conv2", "conv_shortcut", "to_out_0")) else tuple(p.split("/"))
          for p in stream}
  return [flat[k + ("__call__",)][0] for k in sorted(keys)]


def test_residual_streams_cover_every_writer_once_and_zero_the_stream():
  from jaxdiff.models.unet import residual_streams
  model, params = _unet()
  streams = residual_streams(TINY)
  writers = [n for s in streams for n in s]
  groups = {g.name: g for g in pruning.channel_groups(params)}
  want = {n for n in groups if n.endswith(("conv2", "conv_shortcut", "to_out_0", "conv_in", "samplers_0/conv"))}
  assert len(writers) == len(set(writers)) and set(writers) == want
  assert max(len(s) for s in streams) >= 4  # the last level's stream runs on through the middle block
  # channel 1 of every stream pruned: every output written into a stream is exactly 0 in channel 1
  pruned = {n: np.arange(groups[n].size) == 1 for n in writers}
  masked = pruning.apply_mask(params, pruning.channel_mask(params, list(groups.values()), pruned))
  flat = _captured(model, masked)
  for stream in streams:
    for out in _stream_outputs(flat, stream):
      assert float(jnp.max(jnp.abs(out[..., 1]))) == 0.0, stream
      assert float(jnp.max(jnp.abs(out[..., 0]))) > 0.0
  # one writer left out (per-layer pruning): the stream's channel comes back after it
  longest = max(streams, key=len)
  partial = {n: np.arange(groups[n].size) == 1 for n in longest[:-1]}
  masked = pruning.apply_mask(params, pruning.channel_mask(params, list(groups.values()), partial))
  assert float(jnp.max(jnp.abs(_stream_outputs(_captured(model, masked), longest)[-1][..., 1]))) > 0.0


def test_prune_couples_a_stream_by_its_summed_score():
  from jaxdiff.models.unet import residual_streams
  _, params = _unet()
  streams = residual_streams(TINY)
  groups = pruning.channel_groups(params)
  rng = np.random.default_rng(0)
  clean = {g.name: rng.random(g.size) for g in groups}
  trig = {g.name: clean[g.name] + rng.random(g.size) for g in groups}
  for method, scores in (("diff_cleanse", {k: trig[k] - clean[k] for k in clean}), ("diff_pruning", clean)):
    _, coupled = pruning.prune(params, clean, trig, 0.2, method, streams=streams)
    for s in streams:
      total = sum(scores[n] for n in s)
      k = int(np.floor(0.2 * len(total)))
      pick = np.argsort(-total if method == "diff_cleanse" else total, kind="stable")[:k]
      for n in s:  # every writer loses the same channels: the stream's top (bottom) summed scores
        np.testing.assert_array_equal(np.flatnonzero(coupled[n]), np.sort(pick))
  # layers outside every stream are pruned on their own, as without streams; a stream's choice is not its
  # writers' own
  _, layer = pruning.prune(params, clean, trig, 0.2, "diff_cleanse")
  _, coupled = pruning.prune(params, clean, trig, 0.2, "diff_cleanse", streams=streams)
  alone = [g.name for g in groups if not any(g.name in s for s in streams)]
  assert alone and all(np.array_equal(layer[n], coupled[n]) for n in alone)
  assert any(not np.array_equal(layer[n], coupled[n]) for s in streams if len(s) > 1 for n in s)
  with pytest.raises(ValueError, match="not prunable layers"):
    pruning.prune(params, clean, trig, 0.2, streams=[("conv_in", "no_such_layer")])
