"""The admin HTTP API: tenants, their limits, API keys, usage, voice-key rotation.

Every route requires `Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time); with
no ADMIN_TOKEN configured the admin API answers 503 to everything. The same operations are
on the command line (`qtts admin ...`).

    POST   /admin/tenants                       {name, limits?}        -> 201 tenant
    GET    /admin/tenants                                              -> {tenants: [...]}
    GET    /admin/tenants/{tenant}                                     -> tenant
    PUT    /admin/tenants/{tenant}/limits       TenantLimits           -> tenant
    PUT    /admin/tenants/{tenant}/consent      ConsentPolicy          -> the policy in force
    POST   /admin/tenants/{tenant}/keys         {name?, scopes?}       -> 201 {key, ...} (once)
    GET    /admin/tenants/{tenant}/keys                                -> {keys: [...]}
    DELETE /admin/keys/{key_id}                                        -> the revoked key
    GET    /admin/tenants/{tenant}/usage?period=month|day|YYYY-MM|YYYY-MM-DD
    POST   /admin/voice-keys/rotate                                    -> re-encrypted counts
    ... plans, tenants' plans, closing a period, the usage export: serve_app.routes.billing_admin

`{tenant}` is a tenant id or name.
"""

# No `from __future__ import annotations`: FastAPI reads these nested routes' signatures,
# and string annotations of a closure's names would not resolve.

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from serve_app.edge.api_errors import ApiError, from_platform
from serve_app.platform.config import TenantLimits
from serve_app.platform.consent import ConsentPolicy
from serve_app.platform.errors import PlatformError
from serve_app.platform.keys import admin_token_sent
from serve_app.platform.service import Platform
from serve_app.protocol.admin_api import CreateKey, CreateTenant
from serve_app.routes.billing_admin import create_billing_admin_router


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except PlatformError as exc:
        raise from_platform(exc) from None


def create_admin_router(get_platform: Callable[[], Platform]) -> APIRouter:
    """The admin routes over the Platform that `get_platform` returns (the replica's)."""

    def admin(request: Request) -> Platform:
        platform = get_platform()
        token = platform.args.admin_token
        if token is None or not token.get_secret_value():
            raise ApiError(503, "admin_disabled", "the admin API is off: set ADMIN_TOKEN")
        if not admin_token_sent(request.headers, token):
            raise ApiError(401, "invalid_admin_token", "a valid admin token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="qtts-admin"'})
        return platform

    router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)
    Admin = Depends(admin)  # noqa: N806 - reads as a type in the signatures below

    @router.post("/tenants", status_code=201)
    async def create_tenant(body: CreateTenant, platform: Platform = Admin) -> dict:
        return (await _call(platform.tenants.create, body.name, body.limits)).as_dict()

    @router.get("/tenants")
    async def list_tenants(platform: Platform = Admin) -> dict:
        return {"tenants": [t.as_dict() for t in await _call(platform.tenants.list)]}

    @router.get("/tenants/{tenant}")
    async def get_tenant(tenant: str, platform: Platform = Admin) -> dict:
        return (await _call(platform.tenants.get, tenant)).as_dict()

    @router.put("/tenants/{tenant}/limits")
    async def set_limits(tenant: str, body: TenantLimits, platform: Platform = Admin) -> dict:
        return (await _call(platform.tenants.set_limits, tenant, body)).as_dict()

    @router.put("/tenants/{tenant}/consent")
    async def set_consent(tenant: str, body: ConsentPolicy, platform: Platform = Admin) -> dict:
        """The tenant's own consent policy; a level left null is inherited."""
        return await _call(platform.set_tenant_consent, tenant, body)

    @router.post("/tenants/{tenant}/keys", status_code=201)
    async def create_key(tenant: str, body: CreateKey, platform: Platform = Admin) -> dict:
        created = await _call(platform.keys.create, tenant, name=body.name, scopes=body.scopes)
        return {**created.info.as_dict(), "key": created.secret,
                "note": "store this key now: it is not shown again"}

    @router.get("/tenants/{tenant}/keys")
    async def list_keys(tenant: str, platform: Platform = Admin) -> dict:
        return {"keys": [k.as_dict() for k in await _call(platform.keys.list, tenant)]}

    @router.delete("/keys/{key_id}")
    async def revoke_key(key_id: str, platform: Platform = Admin) -> dict:
        return (await _call(platform.keys.revoke, key_id)).as_dict()

    @router.get("/tenants/{tenant}/usage")
    async def usage(tenant: str, period: str = "month", platform: Platform = Admin) -> dict:
        info = await _call(platform.tenants.get, tenant)
        return (await _call(platform.usage.summary, info.id, period)).as_dict()

    @router.post("/voice-keys/rotate")
    async def rotate(platform: Platform = Admin) -> dict:
        return {"reencrypted": await _call(platform.rotate_voice_key),
                "primary_key_id": platform.keyring.primary_id}

    router.include_router(create_billing_admin_router(admin))
    return router
