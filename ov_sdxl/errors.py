"""The typed errors of ov-sdxl; each front end translates them once (CLI exit code, ``gr.Error``).

    from ov_sdxl.errors import ConfigError
    raise ConfigError("width 1000 is not a multiple of 8; use 992 or 1000 rounded to 1008")

``InputError`` and its subclasses are the user's to fix (the CLI exits with 2); the others are failures
(exit 1).
"""


class OvSdxlError(Exception):
    """Base of every error ov-sdxl raises on purpose."""


class InputError(OvSdxlError):
    """Bad input from the user: a value, a path, a device. The message names the value and the rule or fix."""


class ConfigError(InputError):
    """A configuration value breaks a rule (size, steps, strength, scheduler name...)."""


class ModelNotFoundError(InputError):
    """A model folder, sub-model or source checkpoint is missing."""


class DeviceNotAvailableError(InputError):
    """The requested OpenVINO device is not present on this machine."""


class ImageError(InputError):
    """An input image is missing, unreadable or not acceptable."""


class OutputPathError(InputError):
    """An output path that images cannot be written to (not .png, a missing or read-only folder)."""


class CorruptModelError(InputError):
    """A converted model's files do not match its manifest or cannot be read (reconvert it)."""


class ConversionError(OvSdxlError):
    """Exporting or compressing a model failed."""


class GenerationError(OvSdxlError):
    """Generation failed at run time."""


class GenerationCancelled(OvSdxlError):
    """The caller cancelled a running generation."""


class OutputError(OvSdxlError):
    """An output file could not be written (disk full, permissions)."""


class InsufficientResourcesError(InputError):
    """Not enough free memory or disk for the job, or over the user's own cap (``--max-memory``)."""
