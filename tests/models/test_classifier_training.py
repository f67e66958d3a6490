"""A digits classifier trained through the shared train step reaches > 90% test accuracy."""

from configs import classifier_digits
from jaxdiff.data import digits_source
from jaxdiff.convert import load_model
from jaxdiff.tasks.train import evaluate_classifier, train_classifier


def test_digits_cnn_over_90_percent(tmp_path):
  c = classifier_digits.get_config()
  c.train.update(num_steps=120, checkpoint_every=120, eval_every=120, log_every=40)
  c.model.widths = (16, 32)
  train_classifier(c, str(tmp_path))
  model, variables, meta = load_model(str(tmp_path / "export"))
  acc = evaluate_classifier(model, variables, digits_source("test", 16))
  assert acc > 0.9 and abs(acc - meta["test_accuracy"]) < 1e-9
