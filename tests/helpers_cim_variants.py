"""Variants of the real CityGML samples, shared by the parsing and the ingest tests."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "cim"
LOD4 = DATA / "citygml4j_lod4_building_v2.gml"  # a building with rooms, and a 9-triangle TIN
TIN_ID = "GUID_04D4DsNGv1MfvYu5O3lkcW"  # the TINRelief of LOD4

RELIEF_WITHOUT_SURFACES = """
    <cityObjectMember>
      <dem:ReliefFeature gml:id="relief-2">
        <dem:lod>2</dem:lod>
        <dem:reliefComponent>
          <dem:MassPointRelief gml:id="mass-points">
            <dem:lod>2</dem:lod>
            <dem:reliefPoints><gml:MultiPoint><gml:pointMember><gml:Point>
              <gml:pos>458870 5438345 112</gml:pos></gml:Point></gml:pointMember>
            </gml:MultiPoint></dem:reliefPoints>
          </dem:MassPointRelief>
        </dem:reliefComponent>
        <dem:reliefComponent>
          <dem:BreaklineRelief gml:id="break-lines">
            <dem:lod>2</dem:lod>
            <dem:extent><gml:Polygon><gml:exterior><gml:LinearRing>
              <gml:posList srsDimension="2">458868 5438343 458892 5438343 458892 5438362
                458868 5438343</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>
            </dem:extent>
            <dem:ridgeOrValleyLines><gml:MultiCurve><gml:curveMember><gml:LineString>
              <gml:posList>458868 5438343 112 458892 5438362 112</gml:posList>
            </gml:LineString></gml:curveMember></gml:MultiCurve></dem:ridgeOrValleyLines>
          </dem:BreaklineRelief>
        </dem:reliefComponent>
      </dem:ReliefFeature>
    </cityObjectMember>
</CityModel>"""


def lod4_with_unsupported_relief(folder: Path) -> Path:
    """The real LoD4 file with two relief components more that have no surfaces: mass
    points and break lines (with the 2D extent outline CityGML allows them)."""
    text = LOD4.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</CityModel>")
    path = folder / "lod4_relief_points_lines.gml"
    path.write_text(text.rstrip()[: -len("</CityModel>")] + RELIEF_WITHOUT_SURFACES,
                    encoding="utf-8")
    return path
