"""The admin API's request bodies (POST /admin/tenants, POST /admin/tenants/{tenant}/keys);
a tenant's limits are `serve_app.platform.config.TenantLimits`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.platform.config import TenantLimits


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    limits: TenantLimits | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100)
    scopes: list[str] = Field(default_factory=list, description="model:NAME / endpoint:NAME")
