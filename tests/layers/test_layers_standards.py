"""GB 3838-2002 single-factor classes and GB/T 33171-2016 congestion levels."""

from __future__ import annotations

import pytest

from service.layers import gb3838, gbt33171


@pytest.mark.parametrize(("values", "body", "grade", "deciding"), [
    ({"ph": 7.0, "dissolved_oxygen": 8.0, "nh3_n": 0.1, "tp": 0.01}, "river", 1, ("ph",
                                                                                  "dissolved_oxygen",
                                                                                  "nh3_n", "tp")),
    ({"tp": 0.08}, "river", 2, ("tp",)),
    ({"tp": 0.08}, "lake", 4, ("tp",)),  # lakes and reservoirs have tighter TP limits
    ({"tn": 3.0, "nh3_n": 0.1}, "river", 1, ("nh3_n",)),  # TN counts for lakes only
    ({"tn": 3.0, "nh3_n": 0.1}, "lake", 6, ("tn",)),
    ({"dissolved_oxygen": 1.5}, "river", 6, ("dissolved_oxygen",)),  # DO is "at least"
    ({"dissolved_oxygen": 5.0}, "river", 3, ("dissolved_oxygen",)),  # boundary is inclusive
    ({"ph": 9.5, "cod": 10}, "river", 6, ("ph",)),
    ({"cod": 15, "codmn": 4.0}, "river", 2, ("codmn",)),  # COD 15 meets class I
    ({"nh3_n": 1.5, "bod5": 6.0}, "river", 4, ("nh3_n", "bod5")),
])
def test_gb3838_single_factor(values, body, grade, deciding):
    result = gb3838.assess(values, body)
    assert result is not None
    assert result.grade == grade
    assert set(result.deciding) == set(deciding)


def test_gb3838_exceedance_over_class_iii():
    result = gb3838.assess({"nh3_n": 2.5, "tp": 0.1, "dissolved_oxygen": 1.0, "ph": 7}, "river")
    assert result.label == "劣V"
    assert result.exceedance == {"nh3_n": 1.5}  # (2.5 - 1.0) / 1.0; none for DO and pH
    assert gb3838.assess({"water_temp": 20.0}, "river") is None


@pytest.mark.parametrize(("road_class", "speed", "level"), [
    ("expressway", 66, 0), ("expressway", 65, 1), ("expressway", 50.1, 1),
    ("expressway", 50, 2), ("expressway", 35, 3), ("expressway", 20, 4),
    ("primary", 41, 0), ("primary", 40, 1), ("primary", 30, 2), ("primary", 20, 3),
    ("primary", 15, 4), ("secondary", 36, 0), ("branch", 25, 2), ("branch", 10, 4),
])
def test_gbt33171_levels(road_class, speed, level):
    c = gbt33171.congestion(road_class, speed, 70)
    assert c.level == level
    assert 2 * level <= c.index <= 2 * level + 2
    assert c.index < 10 or level == 4


def test_gbt33171_index_is_monotonic_and_tpi_weighted():
    indices = [gbt33171.congestion("primary", v, 55).index for v in range(60, -1, -1)]
    assert indices == sorted(indices) and indices[0] == 0 and indices[-1] == 10
    rows = [("primary", 0, 55, 3.0), ("primary", 55, 55, 1.0)]  # (class, speed, ff, vkt)
    assert gbt33171.area_tpi(rows) == pytest.approx((10 * 3 + 0 * 1) / 4)
    assert gbt33171.area_tpi([]) is None
