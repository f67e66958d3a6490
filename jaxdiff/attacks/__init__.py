"""Evasion attacks in pixel space [0, 1]: PGD, AutoAttack (APGD-CE/T, FAB-T, Square), EAD; PGD adversarial
training."""
from jaxdiff.attacks.apgd import apgd
from jaxdiff.attacks.autoattack import autoattack
from jaxdiff.attacks.common import cross_entropy, dlr_loss, margin, project
from jaxdiff.attacks.ead import ead
from jaxdiff.attacks.fab import fab_t
from jaxdiff.attacks.pgd import pgd, pgd_jit
from jaxdiff.attacks.square import square
from jaxdiff.attacks.training import adversarial_loss
