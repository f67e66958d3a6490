"""PGD adversarial training (Madry et al.): the loss is evaluated on PGD examples of the current model."""
import jax

from jaxdiff.attacks.pgd import pgd


def adversarial_loss(base_loss, *, eps=8 / 255, step_size=2 / 255, steps=8):
  """Wraps a classifier loss (see ``jaxdiff.train.classifier_loss``): ℓ∞ PGD (paper: 8/255, step 2/255,
  8 steps, random start) against the current parameters, in eval mode, then ``base_loss`` on x_adv."""
  def loss_fn(apply_fn, params, model_state, batch, key, frozen=None):
    k_adv, k_loss = jax.random.split(key)
    frozen = jax.lax.stop_gradient({"params": params, **model_state})
    logits_fn = lambda x: apply_fn(frozen, x, train=False)
    x_adv = pgd(logits_fn, batch["image"], batch["label"], key=k_adv, eps=eps, steps=steps, step_size=step_size)
    return base_loss(apply_fn, params, model_state, {**batch, "image": jax.lax.stop_gradient(x_adv)}, k_loss, frozen)
  return loss_fn
