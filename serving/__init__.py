"""Models, model registry and the BentoML service.

Kept light on purpose: importing ``serving`` loads neither torch nor bentoml, so the engine
can import the HTTP client module without paying for them.
"""

from __future__ import annotations

from serving.errors import ServingError

__all__ = ["ServingError"]
