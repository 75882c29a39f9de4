"""Great Expectations suites on bars, news and features: clean data passes, each planted fault is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.features.catalog import PRICE
from feature_store.sources.synthetic import SyntheticMarketConfig, simulate_market
from feature_store.training import training_set_from_bars
from orchestration import quality

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def market():
    return simulate_market(SyntheticMarketConfig(symbols=4, days=0.5, seed=3))


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gx")


def _failed(report: quality.QualityReport) -> set[str]:
    return {f["expectation"] for f in report.failures}


def test_clean_bars_and_news_pass_and_build_data_docs(market, gx_root: Path) -> None:
    bars = market.bars()
    report = quality.validate_bars(bars, gx_root, expected_rows=(len(bars) - 10, len(bars) + 10))
    assert report.success, report.summary()
    assert report.evaluated >= 15 and report.rows == len(bars)
    assert report.docs.startswith("file://")
    assert Path(report.docs.removeprefix("file://")).is_file()
    news = quality.validate_news(market.news, gx_root)
    assert news.success, news.summary()


def test_bad_bars_fail_and_name_what_was_wrong(market, gx_root: Path) -> None:
    bars = market.bars().copy()
    bars.loc[3, "close"] = np.nan
    bars.loc[5, ["high", "low"]] = [bars.loc[5, "low"], bars.loc[5, "high"] + 1.0]  # high < low
    dup = bars.iloc[[10]]
    bad = pd.concat([bars.iloc[:11], dup, bars.iloc[11:]], ignore_index=True)  # a repeated bar
    report = quality.validate_bars(bad, gx_root, expected_rows=(len(bars) * 2, len(bars) * 3))
    assert not report.success
    failed = _failed(report)
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_compound_columns_to_be_unique",
        "expect_table_row_count_to_be_between",
    } <= failed
    by_type = {(f["expectation"], str(f["kwargs"].get("column"))): f for f in report.failures}
    null_close = by_type[("expect_column_values_to_not_be_null", "close")]
    assert null_close["unexpected_count"] == 1 and null_close["sample_rows"][0]["row"] == 3
    order = by_type[("expect_column_values_to_be_between", "ns_since_previous_bar")]
    assert order["unexpected_count"] == 1 and order["sample_rows"][0]["row"] == 11
    assert "high" in report.summary() and "failed" in report.summary()


def test_out_of_order_news_and_empty_headlines_fail(market, gx_root: Path) -> None:
    news = market.news.copy().reset_index(drop=True)
    news.loc[2, "headline"] = ""
    swapped = news.iloc[[0, 1, 3, 2, *range(4, len(news))]].reset_index(drop=True)
    report = quality.validate_news(swapped, gx_root)
    assert {"expect_column_value_lengths_to_be_between", "expect_column_values_to_be_increasing"} <= _failed(report)


def test_features_outside_their_reference_range_fail(market, gx_root: Path) -> None:
    table = training_set_from_bars([PRICE], market.bars(), [15])
    names = ["ret_1_z", "rvol_60", "imbalance_15"]
    reference = quality.reference_ranges(table, names)
    assert quality.validate_features(table, names, gx_root, reference=reference, max_null_share=0.9).success
    rare = table.copy()
    rare.loc[rare.index[-1], "rvol_60"] = 1e6  # one extreme in thousands of rows: tolerated
    assert quality.validate_features(rare, names, gx_root, reference=reference, max_null_share=0.9).success
    bad = table.copy()
    bad.loc[bad.index[-len(bad) // 100 :], "rvol_60"] *= 1e4  # a foreign unit on the last 1% of rows
    bad.loc[bad.index[-2], "ret_1_z"] = np.inf
    report = quality.validate_features(bad, names, gx_root, reference=reference, max_null_share=0.9)
    columns = {f["kwargs"]["column"] for f in report.failures}
    assert not report.success and columns == {"rvol_60", "ret_1_z"}
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['nope'\]"):
        quality.validate_features(table, ["nope"], gx_root)


def test_the_data_docs_index_lists_every_validation_without_a_network(gx_root: Path) -> None:
    """Read as a browser without a network would: only what the HTML itself holds counts."""
    import re

    site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    stored = sorted((gx_root / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(stored) >= 5  # the tests above: clean and bad bars, news twice, features
    for name in ("index.html", quality.quality_page.PAGE):
        text = (site / name).read_text()
        section = text[text.index("<!-- rrr offline validations -->") :]
        links = re.findall(r"<a href='(validations/[^']+\.html)'>", section)
        assert len(links) == len(stored), name
        assert all((site / link).is_file() for link in links)
        assert section.count(">FAILED<") >= 2 and "expect_compound_columns_to_be_unique" in section
    page = (site / quality.quality_page.PAGE).read_text()
    assert "<script" not in page and "http" not in page  # nothing to fetch
    finite = next(p for p in stored if "features" in p.parent.parent.parent.name)
    result_page = site / "validations" / finite.relative_to(gx_root / "gx" / "uncommitted" / "validations")
    html = result_page.with_suffix(".html").read_text()
    assert "is finite" in html and "1.797" not in html
