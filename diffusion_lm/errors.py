"""User-facing errors: raised for bad input (data, config, checkpoints) and printed by the CLI
as one clear line naming the file, line or key — no traceback wall."""


class DiffusionLMError(Exception):
    """Base class for errors whose message is meant for the user."""


class DataError(DiffusionLMError):
    """A dataset file, split or field is missing or malformed."""


class CheckpointError(DiffusionLMError):
    """A checkpoint does not exist or does not match the model being built."""


class ConfigError(DiffusionLMError):
    """A configuration value is inconsistent."""
