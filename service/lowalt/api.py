"""Every low-altitude endpoint, as one router for the app to include."""

from __future__ import annotations

from fastapi import APIRouter

from service.lowalt import api_fleet, api_live, api_rid, api_routes, dispatch_api
from service.lowalt.network import api as api_network

router = APIRouter()
for _module in (api_fleet, api_live, api_rid, api_routes, dispatch_api, api_network):
    router.include_router(_module.router)
