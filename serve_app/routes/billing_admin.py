"""The admin HTTP API of plans and billing, mounted under /admin by serve_app.routes.admin
(same admin-token guard):

    POST /admin/plans                        {name, terms}     -> 201 plan (version 1)
    GET  /admin/plans?archived=false                           -> {plans: [...]}
    GET  /admin/plans/{plan}                                   -> plan with every version
    POST /admin/plans/{plan}/versions        {terms}           -> 201 plan (a new version, now)
    POST /admin/plans/{plan}/archive                           -> plan
    PUT  /admin/tenants/{tenant}/plan        {plan}            -> the tenant's plan (from now)
    GET  /admin/tenants/{tenant}/plan                          -> the tenant's plan or null
    PUT  /admin/tenants/{tenant}/webhook     {url, secret?}    -> quota-warning webhook
    POST /admin/periods/{YYYY-MM}/close                        -> {invoices: [...]} (idempotent)
    GET  /admin/periods/{YYYY-MM}/export                       -> JSONL usage records

`terms` is serve_app.platform.plans.PlanTerms (money: integer minor units).
"""

# No `from __future__ import annotations`: FastAPI reads these nested routes' signatures.

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from serve_app.edge.api_errors import from_platform
from serve_app.platform.errors import PlatformError
from serve_app.platform.invoices import to_jsonl
from serve_app.platform.plans import PlanTerms
from serve_app.platform.service import Platform


class CreatePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    terms: PlanTerms


class NewVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: PlanTerms


class AssignPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, description="Plan id or name")


class TenantWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    secret: str | None = Field(None, max_length=200, description="Made by the server if absent")


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except PlatformError as exc:
        raise from_platform(exc) from None


def create_billing_admin_router(admin: Callable[..., Platform]) -> APIRouter:
    """The routes, guarded by the admin router's `admin` dependency."""
    router = APIRouter()
    Admin = Depends(admin)  # noqa: N806 - reads as a type in the signatures below

    @router.post("/plans", status_code=201)
    async def create_plan(body: CreatePlan, platform: Platform = Admin) -> dict:
        return (await _call(platform.plans.create, body.name, body.terms)).as_dict(
            all_versions=True)

    @router.get("/plans")
    async def list_plans(archived: bool = False, platform: Platform = Admin) -> dict:
        plans = await _call(platform.plans.list, include_archived=archived)
        return {"plans": [p.as_dict() for p in plans]}

    @router.get("/plans/{plan}")
    async def show_plan(plan: str, platform: Platform = Admin) -> dict:
        return (await _call(platform.plans.get, plan)).as_dict(all_versions=True)

    @router.post("/plans/{plan}/versions", status_code=201)
    async def new_version(plan: str, body: NewVersion, platform: Platform = Admin) -> dict:
        return (await _call(platform.plans.new_version, plan, body.terms)).as_dict(
            all_versions=True)

    @router.post("/plans/{plan}/archive")
    async def archive_plan(plan: str, platform: Platform = Admin) -> dict:
        return (await _call(platform.plans.archive, plan)).as_dict()

    @router.put("/tenants/{tenant}/plan")
    async def assign_plan(tenant: str, body: AssignPlan, platform: Platform = Admin) -> dict:
        return (await _call(platform.plans.assign, tenant, body.plan)).as_dict()

    @router.get("/tenants/{tenant}/plan")
    async def tenant_plan(tenant: str, platform: Platform = Admin) -> dict:
        grant = await _call(platform.plans.tenant_plan, tenant)
        return {"plan": grant.as_dict() if grant else None}

    @router.put("/tenants/{tenant}/webhook")
    async def set_webhook(tenant: str, body: TenantWebhook, platform: Platform = Admin) -> dict:
        return await _call(platform.set_tenant_webhook, tenant, body.url, body.secret)

    @router.post("/periods/{period}/close")
    async def close_period(period: str, platform: Platform = Admin) -> dict:
        invoices = await _call(platform.invoices.close_period, period)
        return {"period": period, "invoices": [i.as_dict() for i in invoices]}

    @router.get("/periods/{period}/export", response_class=PlainTextResponse)
    async def export(period: str, platform: Platform = Admin) -> PlainTextResponse:
        records = await _call(platform.invoices.export, period)
        return PlainTextResponse(to_jsonl(records), media_type="application/x-ndjson")

    return router
