"""Fast tests: the charts' buckets and percentiles, and the SVG they are drawn as."""
from __future__ import annotations

import re

import pytest

from receiver import charts, stats

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0.0, "2"), (0.002, "2"), (0.0021, "5"), (0.024, "25"), (0.025, "25"), (0.9, "1000"), (2.5, "2500"), (2.51, "inf"), (60, "inf"),
])
def test_an_answer_falls_in_the_smallest_bucket_it_is_within(seconds, bucket):
    assert stats.ack_bucket(seconds) == bucket


@pytest.mark.parametrize(("code", "outcome"), [(200, "accepted"), (401, "refused"), (413, "refused"), (404, "refused"), (503, "failed"), (500, "failed")])
def test_answers_sort_into_accepted_refused_and_failed(code, outcome):
    assert stats.push_outcome(code) == outcome


def test_percentiles_are_the_bound_of_the_bucket_they_fall_in():
    buckets = {"5": 90, "25": 9, "inf": 1}
    assert stats.percentile(buckets, 0.5) == "5"
    assert stats.percentile(buckets, 0.9) == "5"
    assert stats.percentile(buckets, 0.99) == "25"
    assert stats.percentile(buckets, 1.0) == "inf"
    assert stats.percentile({"250": 3}, 0.5) == "250"
    assert stats.percentile({}, 0.5) == ""


def test_bars_stack_in_proportion_with_their_numbers_in_titles():
    svg = str(charts.draw("c", ["08:00", "09:00", "10:00"], [charts.Series("demo", [3, 0, 10]), charts.Series("<daji>", [2, 0, 0])]))
    rects = re.findall(r'data-series="([^"]+)" data-value="([^"]+)" x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)"', svg)
    assert [(s, v) for s, v, _, _ in rects] == [("demo", "3"), ("&lt;daji&gt;", "2"), ("demo", "10")]
    heights = [float(h) for *_, h in rects]
    assert heights[0] == pytest.approx(heights[2] * 0.3, abs=0.11) and heights[1] == pytest.approx(heights[2] * 0.2, abs=0.11)
    assert "<title>08:00 &lt;daji&gt;: 2</title>" in svg and "<daji>" not in svg  # escaped
    assert ">10</text>" in svg  # the y axis' top: a round number at or above the highest stack


def test_lines_leave_gaps_where_nothing_was_sampled():
    svg = str(charts.draw("q", ["a", "b", "c"], [charts.Series("depth", [None, 4, 35])], kind="lines"))
    assert re.findall(r'class="point" data-series="depth" data-value="([^"]+)"', svg) == ["4", "35"]
    assert svg.count("<polyline") == 1 and ">50</text>" in svg


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (35, 50), (99, 100), (101, 200), (0.3, 1)])
def test_the_y_axis_ends_at_one_two_or_five_times_a_power_of_ten(value, top):
    assert charts._ceiling(value) == top


def test_the_legend_gives_each_series_total():
    shown = str(charts.legend([charts.Series("demo", [3, None, 10]), charts.Series("daji", [1, 1, 1])]))
    assert "demo 13</span>" in shown and "daji 3</span>" in shown
