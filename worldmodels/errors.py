"""The one exception type that the CLI turns into a single readable sentence."""


class ConfigError(Exception):
    """A problem the user can fix by changing a config value, installing something, or picking
    another file. The message is one sentence that names the key or file and says what to do."""


class NonFiniteError(ConfigError):
    """Training produced NaN or inf (``worldmodels.training.guard``): the run stops with one sentence
    naming the metric, the update and the env step; its last good checkpoint stays as it was."""
