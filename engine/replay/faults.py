"""Fault switches of the replay exchange.

A spec is a comma-separated list of ``fault=N[:arg][@kind][*times]``:

* ``drop=N`` drops a message; ``duplicate=N`` sends it twice; ``reorder=N`` holds it back
  and sends it after the next one;
* ``stall=N:S`` stops sending for ``S`` seconds (the connection stays open; messages queue);
* ``close=N`` closes the connection abruptly (no close frame, like a lost network);
* ``error=N`` sends the venue's error message before the message.

A fault fires when a connection has sent its ``N``-th data message of ``kind`` (``trade``,
``book`` or ``any``, the default) and every ``N`` messages after that, at most ``times``
times in the server's life (default 1; ``*0`` is unlimited). Acks, snapshots and
heartbeats are never faulted. Example: ``drop=40@book,close=500,stall=200:3``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULTS", "Fault", "parse_faults"]

FAULTS = ("drop", "duplicate", "reorder", "stall", "close", "error")
KINDS = ("any", "trade", "book")


@dataclass
class Fault:
    """One switch; ``fired`` counts how often it went off."""

    name: str
    every: int
    kind: str = "any"
    times: int = 1
    seconds: float = 0.0
    fired: int = 0

    def armed(self) -> bool:
        return self.times == 0 or self.fired < self.times


def parse_faults(spec: str) -> list[Fault]:
    """Parse a fault spec (see the module docstring).

    Raises:
        ValueError: an unknown fault or kind, or a bad number; the message names it.
    """
    faults: list[Fault] = []
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = raw.partition("=")
        if not sep or name not in FAULTS:
            raise ValueError(f"bad fault {raw!r}: expected one of {', '.join(FAULTS)} as name=N")
        times = 1
        if "*" in rest:
            rest, _, count = rest.partition("*")
            times = _int(count, raw, minimum=0)
        kind = "any"
        if "@" in rest:
            rest, _, kind = rest.partition("@")
            if kind not in KINDS:
                raise ValueError(f"bad fault {raw!r}: kind must be one of {', '.join(KINDS)}")
        seconds = 0.0
        if ":" in rest:
            rest, _, arg = rest.partition(":")
            try:
                seconds = float(arg)
            except ValueError:
                raise ValueError(f"bad fault {raw!r}: {arg!r} is not a number of seconds") from None
            if not seconds > 0:
                raise ValueError(f"bad fault {raw!r}: seconds must be > 0")
        elif name == "stall":
            raise ValueError(f"bad fault {raw!r}: stall needs a duration, e.g. stall=100:3")
        faults.append(Fault(name, _int(rest, raw, minimum=1), kind, times, seconds))
    return faults


def _int(text: str, raw: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"bad fault {raw!r}: {text!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"bad fault {raw!r}: {value} must be >= {minimum}")
    return value
