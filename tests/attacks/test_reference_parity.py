"""PGD against a PyTorch transcription of the reference loops (torchattacks' PGD / PGDL2, AutoAttack's APGD
start) on one MLP with identical weights, and the small numerical rules the cross-check found."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff import attacks
from jaxdiff.attacks.apgd import halve_step_size
from jaxdiff.attacks.common import ascent_direction, random_start

torch = pytest.importorskip("torch")  # test extra

RNG = np.random.default_rng(0)
W1, B1 = RNG.normal(size=(64, 32)).astype(np.float32) * 0.3, RNG.normal(size=32).astype(np.float32) * 0.1
W2, B2 = RNG.normal(size=(32, 10)).astype(np.float32) * 0.3, RNG.normal(size=10).astype(np.float32) * 0.1
X = RNG.uniform(0.1, 0.9, size=(100, 8, 8, 1)).astype(np.float32)


def jax_mlp(x):
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ W1 + B1)
  return h @ W2 + B2


def torch_mlp(x):
  h = torch.tanh(x.reshape(x.shape[0], -1) @ torch.tensor(W1) + torch.tensor(B1))
  return h @ torch.tensor(W2) + torch.tensor(B2)


def torch_pgd(x, y, eps, alpha, steps, norm):
  """torchattacks 3.5.1 PGD (ℓ∞) / PGDL2 without random start, transcribed: ascent on CE, sign or
  g/(‖g‖ + 1e-10) steps, projection onto the ball then the [0, 1] box."""
  x, y = torch.tensor(x), torch.tensor(y, dtype=torch.long)
  adv = x.clone()
  for _ in range(steps):
    adv.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(torch_mlp(adv), y, reduction="sum")
    g, = torch.autograd.grad(loss, adv)
    with torch.no_grad():
      if norm == "linf":
        adv = adv + alpha * g.sign()
        adv = torch.clamp(x + torch.clamp(adv - x, -eps, eps), 0, 1)
      else:
        g = g / (g.reshape(len(g), -1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10)
        d = adv + alpha * g - x
        factor = torch.clamp(eps / d.reshape(len(d), -1).norm(dim=1), max=1.0).view(-1, 1, 1, 1)
        adv = torch.clamp(x + d * factor, 0, 1)
  return adv.detach().numpy()


@pytest.mark.parametrize("norm,eps", [("linf", 0.03), ("l2", 0.5)])
def test_pgd_matches_the_reference_loop(norm, eps):
  y = np.asarray(jnp.argmax(jax_mlp(jnp.asarray(X)), -1))
  alpha = 2.5 * eps / 10
  want = torch_pgd(X, y, eps, alpha, 10, norm)
  got = attacks.pgd(jax_mlp, jnp.asarray(X), jnp.asarray(y), key=jax.random.key(0), eps=eps, steps=10, norm=norm,
                    step_size=alpha, random_init=False)
  dist = lambda a: np.linalg.norm((a - X).reshape(len(X), -1), axis=1)
  np.testing.assert_allclose(dist(np.asarray(got)), dist(want), atol=2e-4)  # every one of the 100 inputs
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)


def test_l2_direction_is_unit_length_even_for_tiny_gradients():
  g = jax.random.normal(jax.random.key(0), (4, 8, 8, 1)) * jnp.array([1.0, 1e-4, 1e-6, 1e-7])[:, None, None, None]
  n = jnp.sqrt(jnp.sum(ascent_direction(g, "l2") ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(n[:3], 1.0, rtol=1e-4)  # the old ε inside the root gave 0.995, 0.1, 0.01


def test_l2_random_starts_uniform_radius_for_pgd_and_sphere_for_apgd():
  x = jnp.full((2000, 8, 8, 1), 0.5)  # far from the box: no clipping
  eps = 0.3
  r = lambda z: np.linalg.norm(np.asarray(z - x).reshape(len(x), -1), axis=1) / eps
  pgd_r = r(random_start(jax.random.key(1), x, eps, "l2"))
  assert stats.kstest(pgd_r, "uniform").pvalue > 0.01  # r ~ U[0, 1]·ε (torchattacks' PGDL2)
  np.testing.assert_allclose(r(random_start(jax.random.key(2), x, eps, "l2", l2_radius="sphere")), 1.0, rtol=1e-5)


def test_apgd_halves_when_at_most_rho_of_the_window_increased():
  window, rho = 20.0, 0.75
  n = jnp.array([14.0, 15.0, 16.0])  # ρ·window = 15: the reference halves at ≤ 15
  no = jnp.zeros(3, bool)
  got = halve_step_size(n, window, rho, ~no, jnp.zeros(3), jnp.ones(3))
  assert got.tolist() == [True, True, False]
  # condition 2: not halved last time and no improvement since the last checkpoint
  assert halve_step_size(jnp.array([16.0]), window, rho, jnp.array([False]), jnp.array([2.0]),
                         jnp.array([2.0])).tolist() == [True]
