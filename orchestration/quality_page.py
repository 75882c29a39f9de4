"""An offline list of every data-quality validation, built from Great Expectations' stored results.

Great Expectations' Data Docs index draws its list of validations with jQuery and
bootstrap-table loaded from CDNs, so without a network it lists nothing. After every
validation :func:`build` writes ``quality.html`` beside that index: plain HTML with its style
inline and no script, newest first, one row per stored validation (time, suite, outcome,
expectations, what failed and what was observed) linking to Great Expectations' own page for
it. The same list is written into the Data Docs index, so that it lists them offline too.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PAGE", "build"]

PAGE = "quality.html"
_BEGIN, _END = "<!-- rrr offline validations -->", "<!-- /rrr offline validations -->"
_STYLE = """
.rrr-offline{font-family:system-ui,sans-serif;margin:1rem;max-width:80rem}
.rrr-offline table{border-collapse:collapse;width:100%;font-size:.9rem}
.rrr-offline th,.rrr-offline td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.rrr-offline .ok{color:#166534}.rrr-offline .failed{color:#b91c1c;font-weight:600}
.rrr-offline ul{margin:0;padding-left:1rem}
"""


@dataclass(frozen=True)
class _Row:
    time: str
    suite: str
    success: bool | None  # None: the stored result could not be read
    evaluated: int
    failed: int
    failures: tuple[str, ...]
    link: str


def build(gx_dir: Path) -> Path:
    """Write ``quality.html`` and the offline list in the Data Docs index under ``gx_dir``; return the page."""
    site = gx_dir / "uncommitted" / "data_docs" / "local_site"
    stored = gx_dir / "uncommitted" / "validations"
    rows = [_row(path, stored) for path in stored.rglob("*.json")] if stored.is_dir() else []
    rows.sort(key=lambda r: r.time, reverse=True)
    section = _section(rows)
    site.mkdir(parents=True, exist_ok=True)
    page = site / PAGE
    head = "<!doctype html><html><head><meta charset='utf-8'><title>Data quality</title></head>"
    _write(page, f"{head}<body>{section}</body></html>")
    index = site / "index.html"
    if index.is_file():
        _write(index, _inject(index.read_text(encoding="utf-8"), section))
    return page


def _row(path: Path, stored: Path) -> _Row:
    link = path.relative_to(stored).with_suffix(".html").as_posix()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stats = data.get("statistics") or {}
        failures = tuple(_failure(item) for item in data.get("results") or [] if not item.get("success"))
        return _Row(
            time=str((data.get("meta") or {}).get("validation_time") or ""),
            suite=str(data.get("suite_name") or path.parent.parent.parent.name),
            success=bool(data.get("success")),
            evaluated=int(stats.get("evaluated_expectations") or 0),
            failed=int(stats.get("unsuccessful_expectations") or 0),
            failures=failures,
            link=f"validations/{link}",
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return _Row("", path.parent.parent.parent.name, None, 0, 0, (f"unreadable result {path.name}: {exc}",), "")


def _failure(item: dict[str, Any]) -> str:
    config = item.get("expectation_config") or {}
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id", "result_format")}
    what = config.get("description") or config.get("type", "?")
    where = kwargs.get("column") or kwargs.get("column_list") or ""
    result = item.get("result") or {}
    seen = []
    if result.get("unexpected_count") is not None:
        seen.append(f"{result['unexpected_count']} unexpected")
    if result.get("observed_value") is not None:
        seen.append(f"observed {result['observed_value']}")
    if item.get("exception_info", {}).get("raised_exception"):
        seen.append(f"error: {item['exception_info'].get('exception_message')}")
    return f"{what} {where}: {', '.join(seen) or 'failed'}".replace("  ", " ")


def _section(rows: list[_Row]) -> str:
    passed = sum(1 for r in rows if r.success)
    out = [
        _BEGIN,
        f"<style>{_STYLE}</style><section class='rrr-offline'>",
        f"<h2>Validations ({len(rows)}: {passed} passed, {len(rows) - passed} failed or unreadable)</h2>",
        "<p>This list needs no network; each row links to the validation's own page.</p>",
        "<table><thead><tr><th>validated (UTC)</th><th>suite</th><th>outcome</th><th>expectations</th>"
        "<th>what failed</th></tr></thead><tbody>",
    ]
    for r in rows:
        outcome = "unreadable" if r.success is None else ("passed" if r.success else "FAILED")
        css = "ok" if r.success else "failed"
        suite = f"<a href='{html.escape(r.link)}'>{html.escape(r.suite)}</a>" if r.link else html.escape(r.suite)
        failed = "".join(f"<li>{html.escape(f)}</li>" for f in r.failures)
        listed = f"<ul>{failed}</ul>" if failed else ""
        out.append(
            f"<tr><td>{html.escape(r.time[:19].replace('T', ' '))}</td><td>{suite}</td><td class='{css}'>{outcome}</td>"
            f"<td>{r.evaluated - r.failed} of {r.evaluated} held</td><td>{listed}</td></tr>"
        )
    if not rows:
        out.append("<tr><td colspan='5'>no validation stored yet</td></tr>")
    out += ["</tbody></table></section>", _END]
    return "".join(out)


def _inject(index: str, section: str) -> str:
    """``index`` with ``section`` right after its ``<body>`` tag (replacing an earlier one)."""
    start, end = index.find(_BEGIN), index.find(_END)
    if start >= 0 and end > start:
        return index[:start] + section + index[end + len(_END) :]
    body = index.find("<body")
    close = index.find(">", body) if body >= 0 else -1
    if close < 0:
        return section + index
    return index[: close + 1] + section + index[close + 1 :]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
