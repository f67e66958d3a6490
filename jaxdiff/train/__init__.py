"""Train state, the one sharded train step, checkpoints, the loop and the train → export runner."""
from jaxdiff.train.checkpoint import Checkpointer, IncompatibleCheckpointError
from jaxdiff.train.loop import train_loop
from jaxdiff.train.runner import fit
from jaxdiff.train.state import TrainState, create_state, ema_update, learning_rate_schedule, make_optimizer
from jaxdiff.train.step import augmented, classifier_loss, diffusion_loss, make_train_step
