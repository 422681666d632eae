"""Request bodies of the route network, vertiports and reservations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from service.core.instants import WorkingDatetime
from service.lowalt.schemas import Strict

#: [lon, lat] or [lon, lat, h]: a point needs both coordinates (an empty one was a 500)
Position = Annotated[list[float], Field(min_length=2, max_length=3)]


class VertiportIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(None, max_length=64)
    position: Position = Field(
        description="[lon, lat] (the pad on the ground) or [lon, lat, pad height] "
                    "(WGS 84 ellipsoidal, e.g. a roof)")
    capacity_per_hour: int = Field(ge=1, le=3600,
                                   description="take-offs and landings per hour")


class GenerateIn(Strict):
    guides: Literal["roads"] | dict[str, Any] = Field(
        "roads", description="'roads': the road centre lines of the traffic layer; or a "
                             "GeoJSON FeatureCollection of LineStrings (roads, rivers)")
    road_classes: list[Literal["expressway", "primary", "secondary", "branch"]] | None = \
        Field(None, description="only these road classes (with guides='roads')")
    note: str | None = Field(None, max_length=2000)


class CloseEdgeIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)
    both_directions: bool = Field(True, description="close the edge the other way too")
    allow_disconnect: bool = Field(
        False, description="accept the edit even if it cuts a vertiport off (flagged in "
                           "the version); otherwise it is refused with 409")


class AddEdgeIn(Strict):
    from_node: int
    to_node: int
    via: list[Position] | None = Field(
        None, max_length=500, description="[lon, lat] points between the two nodes")
    both_directions: bool = True
    note: str | None = Field(None, max_length=2000)


class FlightIn(Strict):
    drone_id: int
    from_vertiport: int
    to_vertiport: int
    departure: WorkingDatetime
    max_delay_s: float = Field(
        0, ge=0, le=86_400, description="how much later the flight may depart when the "
                                        "network is full at the time asked for")
    priority: int = Field(0, ge=0, le=9)
    name: str | None = Field(None, max_length=200)


class TravelTimesIn(Strict):
    positions: list[Position] = Field(min_length=1, max_length=2000,
                                      description="[lon, lat] points")
