"""The Out-D2D scorer of the digits zoo: a small CNN on digits plus procedural rings as an 11th class (label
10) and junk images (noise, speckle, dots) as a 12th, a reject class (label 11). The zoo task trains the same network itself when ``zoo.out_classifier`` is empty; train it once here and
pass ``--config.zoo.out_classifier=WORKDIR/export`` to share it between zoos.

  python launch/main.py --config=configs/classifier_digits_rings.py --workdir=workdirs/cnn_digits_rings
"""
from configs import classifier_digits


def get_config():
  c = classifier_digits.get_config()
  c.data.update(name="digits_rings", num_classes=12)
  c.model.num_classes = 12
  c.train.update(num_steps=400, eval_every=200)
  return c
