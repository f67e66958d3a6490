"""Schedules, samplers and losses of the diffusion core (DESIGN §2)."""
from jaxdiff.diffusion.losses import eps_loss
from jaxdiff.diffusion.samplers import (SAMPLERS, SPACINGS, diffuse, one_step_denoise, purify, reverse, sample,
                                        time_grid, timestep_pairs)
from jaxdiff.diffusion.schedules import (Schedule, cosine_schedule, from_betas, linear_schedule,
                                         make_schedule, vp_beta, vp_log_alpha_bar)
from jaxdiff.diffusion.gaussian import gaussian_eps_fn
from jaxdiff.diffusion.inpainting import CORRUPTIONS, corrupt, inpaint
