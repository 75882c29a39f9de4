"""Exceptions raised by the serving layer.

Every error derives from :class:`ServingError`::

    ServingError
    ├── ConfigError          a serving setting from the environment is malformed
    ├── TrainingDataError    training or validation data is unusable (checked before any training)
    └── RegistryError        the model store cannot do what was asked
        ├── ModelNotFoundError   no model with that name, version or stage
        └── PromotionError       a candidate failed a gate or is worse than production
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error raised by ``serving``."""


class ConfigError(ServingError):
    """A serving setting read from the environment is malformed."""


class TrainingDataError(ServingError):
    """Training or validation data is unusable; raised before any training starts.

    Attributes:
        model: which model's data it is (``price``, ``sentiment``, ``risk``).
        problem: what is wrong, in words.
    """

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        self.problem = problem
        super().__init__(f"{model} training data: {problem}")


class RegistryError(ServingError):
    """The model store cannot do what was asked."""


class ModelNotFoundError(RegistryError):
    """No stored model has that name, version or stage."""


class PromotionError(RegistryError):
    """A candidate was refused: it failed a gate or is worse than the production model."""
