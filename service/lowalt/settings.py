"""Settings of the low-altitude service (environment prefix ``TWINBASE_LOWALT_``)."""

from __future__ import annotations

from functools import lru_cache

from fastapi import Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LowAltSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINBASE_LOWALT_", extra="ignore")

    metric_crs: str = Field("EPSG:4547", description="local metric CRS for distances")
    height_limit_m: float = Field(120.0, description="AGL above which approval is needed")
    micro_height_limit_m: float = Field(50.0, description="the same for micro drones")
    clearance_h_m: float = Field(15.0, description="horizontal clearance from buildings")
    clearance_v_m: float = Field(10.0, description="vertical clearance from buildings")
    separation_h_m: float = Field(30.0, description="horizontal separation of corridors")
    separation_v_m: float = Field(10.0, description="vertical separation of volumes")
    time_margin_s: float = Field(120.0, description="each time window widened by this much: two "
                                "flights conflict when less than twice this apart")
    max_days_ahead: float = Field(30.0, description="latest start of a filed route")
    max_window_hours: float = Field(24.0, description="longest reservation of one route")
    past_grace_s: float = Field(300.0, description="a start this far in the past is allowed")
    default_half_width_m: float = 10.0
    default_vertical_half_m: float = 5.0
    below_ground_m: float = Field(10.0, description="centre line this far under ground: refused")
    obstacle_types: tuple[str, ...] = (
        "Building", "BuildingPart", "BuildingInstallation", "Bridge", "BridgePart",
        "BridgeConstructiveElement", "OtherConstruction", "Tunnel",
    )
    ground_types: tuple[str, ...] = ("Building", "Road", "TINRelief", "LandUse",
                                     "TransportSquare", "WaterBody", "PlantCover")
    ground_radius_m: float = Field(300.0, description="city objects used for ground height")
    lock_cell_m: float = Field(1000.0, description="grid of the approval advisory locks")
    sample_step_m: float = Field(5.0, description="sampling of centre lines in checks")
    conflict_step_m: float = Field(
        1.0, description="sampling in the conflict check: it is strict by half of this")
    plan_cell_m: float = Field(10.0, description="horizontal cell of the planning grid")
    plan_margin_m: float = Field(400.0, description="search area around start and goal")
    plan_max_cells: int = Field(600_000, description="largest planning grid (cells x levels)")
    plan_max_shifts: int = Field(
        6, description="later departures planning tries when approved flights block the way")
    plan_default_agl_m: float = Field(30.0, description="start/goal height when none given")
    clock_ahead_s: float = Field(
        5.0, description="reports stamped further ahead of the server clock are refused "
                         "(ASTM F3548-21: participants' clocks within 5 s)")
    silent_after_s: float = Field(15.0, description="a drone this long without a report")
    stream_poll_s: float = Field(0.25, description="how often the live stream looks (one "
                                 "query a process, whatever the clients)")
    stream_keepalive_s: float = Field(15.0, description="comment line on an idle stream")
    network_speed_ms: float = Field(15.0, description="cruise speed on network corridors")
    network_climb_ms: float = Field(3.0, description="climb and descent rate on the network")
    network_half_width_m: float = Field(10.0, description="half-width of a network corridor")
    network_vertical_half_m: float = Field(5.0, description="half-height of a corridor")
    network_base_agl_m: float = Field(30.0, description="layer of northbound edges (AGL)")
    network_layer_step_m: float = Field(
        25.0, description="height between heading layers (N, E, S, W bound): the vertical "
        "separation of volumes (separation_v + 2 x vertical half) plus a margin for the "
        "ground under two corridors near each other differing in height")
    network_buffer_s: float = Field(
        10.0, description="time buffer in an edge's headway (timing uncertainty)")
    network_max_connector_m: float = Field(
        1500.0, description="longest straight connector from a vertiport to a guide line")


@lru_cache
def get_lowalt_settings() -> LowAltSettings:
    return LowAltSettings()


def lowalt_settings(request: Request) -> LowAltSettings:
    """The app's settings (a test or deployment may set ``app.state.lowalt_settings``)."""
    return getattr(request.app.state, "lowalt_settings", None) or get_lowalt_settings()
