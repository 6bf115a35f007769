"""The multi-tenant platform, Ray-free: tenants and API keys, limits, usage metering, saved
voices, durable async jobs, and the storage they share (database, Redis, blob store).

`Platform` (serve_app.platform.service) is the facade the ingress holds; the settings are
`PlatformArgs` (the `platform:` section of AppArgs). Exports load on first use (PEP 562), so
importing the settings does not import SQLAlchemy, Redis or boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from serve_app.platform.config import JobArgs, PlatformArgs, TenantLimits

if TYPE_CHECKING:
    from serve_app.platform.errors import (
        AuthenticationError,
        LimitExceeded,
        NotFound,
        PermissionDenied,
        PlatformError,
    )
    from serve_app.platform.jobs import JobRequest, JobRunner, JobStatus, JobTicket, SegmentAudio
    from serve_app.platform.keys import Principal
    from serve_app.platform.limits import Admission, Decision
    from serve_app.platform.service import Platform
    from serve_app.platform.voices import VoiceInfo

_LAZY = {
    "Platform": "serve_app.platform.service",
    "Principal": "serve_app.platform.keys",
    "Admission": "serve_app.platform.limits",
    "Decision": "serve_app.platform.limits",
    "VoiceInfo": "serve_app.platform.voices",
    "JobRequest": "serve_app.platform.jobs",
    "JobRunner": "serve_app.platform.jobs",
    "JobStatus": "serve_app.platform.jobs",
    "JobTicket": "serve_app.platform.jobs",
    "SegmentAudio": "serve_app.platform.jobs",
    "PlatformError": "serve_app.platform.errors",
    "AuthenticationError": "serve_app.platform.errors",
    "PermissionDenied": "serve_app.platform.errors",
    "NotFound": "serve_app.platform.errors",
    "LimitExceeded": "serve_app.platform.errors",
}

__all__ = [
    "Admission", "AuthenticationError", "Decision", "JobArgs", "JobRequest", "JobRunner",
    "JobStatus", "JobTicket", "LimitExceeded", "NotFound", "PermissionDenied", "Platform",
    "PlatformArgs", "PlatformError", "Principal", "SegmentAudio", "TenantLimits", "VoiceInfo",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
