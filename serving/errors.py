"""Exceptions raised by the serving layer.

Every error derives from :class:`ServingError`::

    ServingError
    ├── ConfigError          a serving setting from the environment is malformed
    ├── TrainingDataError    training or validation data is unusable (checked before any training)
    ├── RegistryError        the model store cannot do what was asked
    │   ├── ModelNotFoundError   no model with that name, version or stage
    │   └── PromotionError       a candidate failed a gate or is worse than production
    ├── ModelUnavailableError    the service has no production version of a model loaded (503)
    └── RequestError         a request the service refuses, with its HTTP status (4xx)
        ├── BadInputError        wrong shape, NaN or infinite values, empty or oversized text (400)
        ├── UnknownSymbolError   no features are stored for a symbol (404)
        ├── FeatureSkewError     inputs computed with another feature-set version (409)
        └── StaleInputError      features older than the requested bar, or still warming up (422)
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


class ModelUnavailableError(ServingError):
    """The service holds no production version of a model (promote one; the service picks it up)."""

    status = 503


class RequestError(ServingError):
    """A request the model service refuses; ``status`` is the HTTP status it answers with.

    Attributes:
        symbols: the symbols the problem concerns (empty when it is not about symbols).
    """

    status = 400

    def __init__(self, message: str, symbols: list[str] | tuple[str, ...] = ()) -> None:
        self.symbols = sorted(symbols)
        super().__init__(message)


class BadInputError(RequestError):
    """Wrong shape, NaN or infinite values, empty or oversized text."""

    status = 400


class UnknownSymbolError(RequestError):
    """No online features are stored for these symbols."""

    status = 404


class FeatureSkewError(RequestError):
    """The inputs were computed with another feature-set version than the served model reads."""

    status = 409


class StaleInputError(RequestError):
    """The stored features are older than the requested bar, too old, or still warming up."""

    status = 422
