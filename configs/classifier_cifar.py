"""A CIFAR-10 classifier with the standard recipe: ResNet-18 (``--config.model.name=resnet50 | wrn28_10 | …`` for
another network of the registry), SGD 0.1 with Nesterov momentum 0.9, weight decay 5e-4, cosine decay, batch 128,
random crop (4-pixel padding) + horizontal flip, 200 epochs (published test accuracy ≈ 95 % for ResNet-18).
CIFAR-10 is fetched (the pinned binary archive; --config.data.name=cifar10 --config.data.data_dir=DIR for tfds).

  python launch/main.py --config=configs/classifier_cifar.py --workdir=workdirs/resnet18_cifar
  # the export: WORKDIR/export (params.safetensors + meta.json with the test accuracy)

DIFF2's CIFAR configs train it as a stage: classifier.path = "train:configs/classifier_cifar.py:model.name=resnet50".
"""
from configs import default

EPOCHS = 200


def get_config(dataset="cifar10"):
  c = default.get_config()
  c.task = "train_classifier"
  default.cifar_data(c, dataset)
  c.model = default.ml_collections.ConfigDict(dict(  # constructor defaults of each network (width etc.)
      name="resnet18", image_size=32, in_channels=3, num_classes=c.data.num_classes, dtype="float32", init_from=""))
  c.optim.update(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, warmup_steps=0, decay="cosine", grad_clip=0.0)
  c.train.update(num_steps=EPOCHS * 50_000 // 128, batch_size=128, augment="crop_flip", log_every=100,
                 checkpoint_every=2000, eval_every=50_000 // 128 * 10)  # test accuracy every 10 epochs
  return c
