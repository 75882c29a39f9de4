"""The synthetic news stream's own templates and vocabulary, each with a known sentiment.

Headlines are written from these templates only, so a model can be scored on text the
generator never produced (phrasings outside these lists).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ASSET_NAMES", "SOURCES", "TEMPLATES", "write_headline"]

# (name, ticker) of the synthetic market's instruments; more are numbered when needed.
ASSET_NAMES: tuple[tuple[str, str], ...] = (
    ("Arcadia", "ARC"),
    ("Borealis", "BOR"),
    ("Cobalt", "CBL"),
    ("Dynamo", "DYN"),
    ("Ember", "EMB"),
    ("Fathom", "FTM"),
    ("Granite", "GRN"),
    ("Helix", "HLX"),
    ("Ionic", "ION"),
    ("Juniper", "JNP"),
    ("Kestrel", "KST"),
    ("Lumen", "LUM"),
    ("Meridian", "MRD"),
    ("Nimbus", "NMB"),
    ("Obsidian", "OBS"),
    ("Polaris", "PLR"),
    ("Quasar", "QSR"),
    ("Radiant", "RAD"),
    ("Solstice", "SOL"),
    ("Tundra", "TND"),
    ("Umbra", "UMB"),
    ("Vertex", "VTX"),
    ("Willow", "WLW"),
    ("Xenon", "XEN"),
)

SOURCES: tuple[str, ...] = ("Wirebeat", "Ledger Daily", "Chainpost", "Market Pulse", "Tickerline")

_PARTNERS = (
    "a major payments firm",
    "a top-five exchange",
    "a global bank",
    "a cloud provider",
    "a leading custody firm",
    "a sovereign fund",
    "a retail brokerage",
)
_NEG_EVENTS = (
    "a security breach",
    "a network outage",
    "a failed upgrade",
    "a regulatory probe",
    "an exploit in its bridge",
    "a lawsuit from investors",
    "a delisting notice",
)
_NEUTRAL_TOPICS = (
    "its quarterly governance vote",
    "a routine node software release",
    "its annual developer conference",
    "a scheduled token unlock",
    "changes to its board",
    "an update to its documentation",
)

# label: -1 negative, 0 neutral, +1 positive. {a}, {b}: "Name (TICKER)" of one or two assets.
TEMPLATES: dict[int, tuple[str, ...]] = {
    1: (
        "{a} surges after partnership with {partner}",
        "{a} rallies as {partner} adopts its network",
        "{a} jumps {pct}% on record transaction volume",
        "{a} wins approval for spot trading in {region}",
        "Analysts upgrade {a} after strong adoption figures",
        "{a} climbs as developer activity hits all-time high",
        "{a} gains after {partner} announces large purchase",
        "{a} and {b} soar on joint interoperability launch",
    ),
    0: (
        "{a} schedules {topic}",
        "{a} publishes details of {topic}",
        "{a} trading flat ahead of {topic}",
        "{a} confirms date for {topic}",
        "Community discusses {topic} at {a}",
        "{a} and {b} to present at industry panel in {region}",
    ),
    -1: (
        "{a} plunges after {neg_event}",
        "{a} slides as {neg_event} rattles holders",
        "{a} drops {pct}% following {neg_event}",
        "Analysts downgrade {a} citing weak adoption",
        "{a} tumbles as {partner} exits its position",
        "{a} sinks after regulators in {region} open an inquiry",
        "{a} and {b} fall as shared bridge suffers {neg_event}",
    ),
}

_REGIONS = ("the EU", "Japan", "Singapore", "the UK", "Canada", "Brazil", "South Korea")


def _multi(template: str) -> bool:
    return "{b}" in template


def write_headline(rng: np.random.Generator, label: int, names: list[str], second: str | None) -> tuple[str, bool]:
    """Write one headline of sentiment ``label`` about ``names[0]`` (and ``second``).

    Returns:
        The headline and whether it used the second asset (two-asset template).
    """
    options = [t for t in TEMPLATES[label] if second is not None or not _multi(t)]
    template = options[int(rng.integers(len(options)))]
    text = template.format(
        a=names[0],
        b=second or "",
        partner=_PARTNERS[int(rng.integers(len(_PARTNERS)))],
        neg_event=_NEG_EVENTS[int(rng.integers(len(_NEG_EVENTS)))],
        topic=_NEUTRAL_TOPICS[int(rng.integers(len(_NEUTRAL_TOPICS)))],
        region=_REGIONS[int(rng.integers(len(_REGIONS)))],
        pct=int(rng.integers(3, 25)),
    )
    return text, _multi(template)
