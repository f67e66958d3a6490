"""Backdoors in diffusion models and their defences: the one trigger module (pixel-space triggers), DIFF2
(trigger optimisation and the backdoor fine-tuning losses)."""
from jaxdiff.backdoor.diff2 import (SCHEMES, InputSpecificTrigger, diff2_inputs, diff2_loss, input_specific_trigger,
                                    optimize_trigger, trigger_loss)
from jaxdiff.backdoor.triggers import Trigger, blend, corner_mask, make_trigger, stamp, warp
