"""Every defence over the Fashion-MNIST zoo (configs/zoo_fashion_mnist.py, same settings): BBTI, Elijah and TERD
detection on the 6 models; Diff-Cleanse removal (loss_p at 3 % per layer: ⌊0.03·64⌋ = 1, ⌊0.03·128⌋ = 3 channels),
Diff-Pruning at the same ratio, the fine-tune with nothing pruned and the unlearn extension on the 4 backdoored ones,
each with ASR at MSE < 1e-3 and < 1e-2, the collapse of triggered samples, FID and the outcome; TERD / UFID / DisDet input-level
detection on the backdoored ones.

  python launch/main.py --config=configs/zoo_fashion_mnist.py --workdir=workdirs/zoo_fashion_mnist
  python launch/main.py --config=configs/defend_zoo_fashion_mnist.py \
      --config.defend.zoo_workdir=workdirs/zoo_fashion_mnist --workdir=workdirs/defend_zoo_fashion_mnist
"""
from configs import default, purify_fashion_mnist, zoo_fashion_mnist


def get_config():
  c = zoo_fashion_mnist.get_config()
  c.task = "defend_zoo"
  default.add_scan(c, model="", encoder_path=purify_fashion_mnist.TARGET)
  c.scan.update(batch=16, num_steps=20, encoder="pixels")
  default.add_defend(c)
  c.defend.update(ratios=())  # the paper's ratio only (scan.remove_ratio, 3 %)
  return c
