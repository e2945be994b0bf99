"""The HTTP API of the spec's API Endpoints (FastAPI), under ``/api/v1``.

``create_app()`` is the application ``agency-crm serve`` runs. To serve the routes from the
agency's own FastAPI application instead::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    import agency_crm.api

    @asynccontextmanager
    async def lifespan(app):
        async with agency_crm.api.open_service("postgresql://api@db/agency") as service:
            app.state.crm_service = service
            yield

    app = FastAPI(lifespan=lifespan)
    agency_crm.api.install(app)      # or app.include_router(agency_crm.api.router)

docs/api.md describes every route, the tokens and the errors.
"""

from __future__ import annotations

from agency_crm.api.app import create_app, install, open_service
from agency_crm.api.auth import get_service
from agency_crm.api.routes import router

__all__ = ["create_app", "get_service", "install", "open_service", "router"]
