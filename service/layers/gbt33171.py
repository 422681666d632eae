"""Traffic congestion levels and the traffic performance index (TPI), after
GB/T 33171-2016 《城市交通运行状况评价规范》.

Levels: the standard's Table of road-segment operating states by average travel speed
(km/h) and road class; the limits live in ``SPEED_BANDS`` and nowhere else:

    level            TPI band   expressway   primary (主干路)   secondary/branch
    畅通 free         [0, 2)     v > 65       v > 40            v > 35
    基本畅通 light    [2, 4)     50 < v ≤ 65  30 < v ≤ 40       25 < v ≤ 35
    轻度拥堵 mild     [4, 6)     35 < v ≤ 50  20 < v ≤ 30       15 < v ≤ 25
    中度拥堵 moderate [6, 8)     20 < v ≤ 35  15 < v ≤ 20       10 < v ≤ 15
    严重拥堵 severe   [8, 10]    v ≤ 20       v ≤ 15            v ≤ 10

Segment index (our exact formula): within its level, a segment's index moves linearly
from the band's low end (at the level's upper speed) to its high end (at the level's lower
speed). The free band runs from the segment's free-flow speed (index 0) down to the
畅通 threshold (index 2); the severe band from the severe threshold (index 8) down to
0 km/h (index 10). So the index is continuous in speed and always falls in its level's band.

Area TPI over a time window: the mean of segment indices weighted by vehicle kilometres
travelled (VKT = volume x length), the weighting the standard uses for network-level
indices; segments without observations in the window do not count. Speeds are the
volume-weighted mean speed of a segment's observations in the window.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("畅通", "基本畅通", "轻度拥堵", "中度拥堵", "严重拥堵")
LEVELS_EN = ("free", "light", "mild", "moderate", "severe")
ROAD_CLASSES = ("expressway", "primary", "secondary", "branch")

# lower speed bound (exclusive) of levels 0..3, per road class; level 4 is below the last
SPEED_BANDS: dict[str, tuple[float, float, float, float]] = {
    "expressway": (65, 50, 35, 20),
    "primary": (40, 30, 20, 15),
    "secondary": (35, 25, 15, 10),
    "branch": (35, 25, 15, 10),
}


@dataclass(frozen=True)
class Congestion:
    level: int  # 0..4
    index: float  # 0..10

    @property
    def name(self) -> str:
        return LEVELS[self.level]

    def as_dict(self) -> dict[str, object]:
        return {"level": self.level, "level_name": LEVELS[self.level],
                "level_en": LEVELS_EN[self.level], "index": round(self.index, 2)}


def level_of(road_class: str, speed_kmh: float) -> int:
    for level, bound in enumerate(SPEED_BANDS[road_class]):
        if speed_kmh > bound:
            return level
    return 4


def congestion(road_class: str, speed_kmh: float, free_flow_kmh: float) -> Congestion:
    bands = SPEED_BANDS[road_class]
    level = level_of(road_class, speed_kmh)
    top = max(free_flow_kmh, bands[0] + 1.0) if level == 0 else bands[level - 1]
    bottom = bands[level] if level < 4 else 0.0
    frac = (top - speed_kmh) / (top - bottom) if top > bottom else 0.0
    frac = min(max(frac, 0.0), 1.0)
    index = 2.0 * level + 2.0 * frac
    if level < 4:  # keep the half-open band [2l, 2l+2)
        index = min(index, 2.0 * level + 1.999)
    return Congestion(level, index)


def level_for_index(index: float) -> int:
    return min(int(index // 2), 4)


def area_tpi(rows: list[tuple[str, float, float, float]]) -> float | None:
    """rows: (road_class, speed_kmh, free_flow_kmh, vkt). VKT-weighted mean index."""
    total = sum(r[3] for r in rows)
    if total <= 0:
        return None
    return sum(congestion(c, v, f).index * w for c, v, f, w in rows) / total
