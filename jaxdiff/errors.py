"""Errors a user can fix. ``launch/main.py`` prints them as one line on stderr and exits with status 2;
anything else is a bug and keeps its traceback."""


class UserError(Exception):
  """Base class: the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
  """A config value is out of range, of the wrong type, or inconsistent with another one."""


class ModelFileError(UserError, ValueError):
  """A model file or folder is missing, truncated, unsafe (pickle) or does not match its description."""


class IncompatibleResultsError(UserError, ValueError):
  """A workdir holds checkpoints or results made under other settings."""


class NonFiniteError(UserError, FloatingPointError):
  """NaN or Inf where a number must be finite (a loss, a gradient, a saved or loaded weight)."""


class MissingFileError(ModelFileError, FileNotFoundError):
  """A model file, a dataset or another input the run needs is not on disk and cannot be fetched."""
