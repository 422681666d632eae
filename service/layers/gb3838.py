"""Surface water quality classes after GB 3838-2002 《地表水环境质量标准》, Table 1
(基本项目标准限值), by the single-factor rule.

Every limit lives in ``LIMITS`` below, and nowhere else. Classes I..V are 1..5; 6 is 劣V
(worse than class V). Rules, as the standard and the Ministry's assessment method
(《地表水环境质量评价办法（试行）》, 环办〔2011〕22号) apply them:

* a parameter's class is the best class whose limit it meets (limits are "≤" except
  dissolved oxygen, which is "≥", and pH, which must lie in 6-9 for every class);
* the overall class is the worst parameter class; the parameters at that class decide it;
* TP limits differ for lakes and reservoirs (湖、库); TN is a lake/reservoir item only;
* water temperature has no class limits and is not classified;
* exceedance multiple (超标倍数) = (C - C_III) / C_III over the class III limit, for the
  parameters above class III; pH and dissolved oxygen have none (as the 2011 method says).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

BodyType = Literal["river", "lake"]
CLASS_LABELS = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "劣V"}
CLASS_III = 3


@dataclass(frozen=True)
class Limit:
    name: str  # column / property name
    label: str  # as printed in the standard
    unit: str
    limits: tuple[float, float, float, float, float]  # class I..V
    kind: Literal["max", "min", "range"] = "max"
    lake_limits: tuple[float, float, float, float, float] | None = None
    lake_only: bool = False


# GB 3838-2002 Table 1, items 2-24 (item 1, water temperature, has no class limits)
LIMITS: tuple[Limit, ...] = (
    Limit("ph", "pH", "", (6, 6, 6, 6, 6), kind="range"),  # 6-9 for all classes
    Limit("dissolved_oxygen", "溶解氧 DO", "mg/L", (7.5, 6, 5, 3, 2), kind="min"),
    Limit("codmn", "高锰酸盐指数 CODMn", "mg/L", (2, 4, 6, 10, 15)),
    Limit("cod", "化学需氧量 COD", "mg/L", (15, 15, 20, 30, 40)),
    Limit("bod5", "五日生化需氧量 BOD5", "mg/L", (3, 3, 4, 6, 10)),
    Limit("nh3_n", "氨氮 NH3-N", "mg/L", (0.15, 0.5, 1.0, 1.5, 2.0)),
    Limit("tp", "总磷 TP (以P计)", "mg/L", (0.02, 0.1, 0.2, 0.3, 0.4),
          lake_limits=(0.01, 0.025, 0.05, 0.1, 0.2)),
    Limit("tn", "总氮 TN (湖、库, 以N计)", "mg/L", (0.2, 0.5, 1.0, 1.5, 2.0), lake_only=True),
    Limit("copper", "铜", "mg/L", (0.01, 1.0, 1.0, 1.0, 1.0)),
    Limit("zinc", "锌", "mg/L", (0.05, 1.0, 1.0, 2.0, 2.0)),
    Limit("fluoride", "氟化物 (以F-计)", "mg/L", (1.0, 1.0, 1.0, 1.5, 1.5)),
    Limit("selenium", "硒", "mg/L", (0.01, 0.01, 0.01, 0.02, 0.02)),
    Limit("arsenic", "砷", "mg/L", (0.05, 0.05, 0.05, 0.1, 0.1)),
    Limit("mercury", "汞", "mg/L", (0.00005, 0.00005, 0.0001, 0.001, 0.001)),
    Limit("cadmium", "镉", "mg/L", (0.001, 0.005, 0.005, 0.005, 0.01)),
    Limit("chromium_vi", "铬 (六价)", "mg/L", (0.01, 0.05, 0.05, 0.05, 0.1)),
    Limit("lead", "铅", "mg/L", (0.01, 0.01, 0.05, 0.05, 0.1)),
    Limit("cyanide", "氰化物", "mg/L", (0.005, 0.05, 0.2, 0.2, 0.2)),
    Limit("volatile_phenol", "挥发酚", "mg/L", (0.002, 0.002, 0.005, 0.01, 0.1)),
    Limit("petroleum", "石油类", "mg/L", (0.05, 0.05, 0.05, 0.5, 1.0)),
    Limit("las", "阴离子表面活性剂", "mg/L", (0.2, 0.2, 0.2, 0.3, 0.3)),
    Limit("sulfide", "硫化物", "mg/L", (0.05, 0.1, 0.2, 0.5, 1.0)),
    Limit("fecal_coliform", "粪大肠菌群", "个/L", (200, 2000, 10000, 20000, 40000)),
)
BY_NAME = {limit.name: limit for limit in LIMITS}
PARAMETERS = tuple(BY_NAME)
PH_RANGE = (6.0, 9.0)


@dataclass(frozen=True)
class Assessment:
    grade: int  # 1..6
    deciding: tuple[str, ...]
    parameter_grades: dict[str, int]
    exceedance: dict[str, float]

    @property
    def label(self) -> str:
        return CLASS_LABELS[self.grade]

    def as_dict(self) -> dict[str, object]:
        return {"grade": self.grade, "class": self.label, "deciding": list(self.deciding),
                "parameter_classes": {k: CLASS_LABELS[v] for k, v in
                                      self.parameter_grades.items()},
                "exceedance": self.exceedance}


def limits_for(limit: Limit, body: BodyType) -> tuple[float, ...]:
    return limit.lake_limits if (body == "lake" and limit.lake_limits) else limit.limits


def parameter_grade(name: str, value: float, body: BodyType) -> int | None:
    """Class 1..6 of one parameter value; None when the parameter is not classified here."""
    limit = BY_NAME.get(name)
    if limit is None or (limit.lake_only and body != "lake"):
        return None
    if limit.kind == "range":
        return 1 if PH_RANGE[0] <= value <= PH_RANGE[1] else 6
    for grade, bound in enumerate(limits_for(limit, body), start=1):
        if (value >= bound) if limit.kind == "min" else (value <= bound):
            return grade
    return 6


def exceedance(name: str, value: float, body: BodyType) -> float | None:
    limit = BY_NAME[name]
    if limit.kind != "max":
        return None
    standard = limits_for(limit, body)[CLASS_III - 1]
    return round((value - standard) / standard, 3) if value > standard else None


def assess(values: Mapping[str, float | None], body: BodyType) -> Assessment | None:
    """Single-factor class of one sample (or of period means); None if nothing classifiable."""
    grades: dict[str, int] = {}
    over: dict[str, float] = {}
    for name, value in values.items():
        if value is None:
            continue
        grade = parameter_grade(name, float(value), body)
        if grade is None:
            continue
        grades[name] = grade
        multiple = exceedance(name, float(value), body)
        if multiple is not None:
            over[name] = multiple
    if not grades:
        return None
    worst = max(grades.values())
    deciding = tuple(n for n, g in grades.items() if g == worst)
    return Assessment(worst, deciding, grades, over)
