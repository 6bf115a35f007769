"""Plans: what a tenant gets and what it pays, versioned.

A plan's terms (`PlanTerms`) hold its limits (requests per minute, requests in flight), the
quota included each calendar month (characters, audio seconds, voice clones), the model
kinds and features it may use, its prices (integer minor units of the one configured
currency: a monthly base, per 1,000 characters per model kind, per audio minute, per saved
voice, per job) and what happens past the included quota: `block` (429 naming the quota and
when it resets) or `bill` (served, billed as overage).

Terms are immutable: changing them makes a new version, in force from then on; a usage row
is priced by the version in force when it was written (serve_app.platform.pricing). A
tenant's move to a plan is a `tenant_plans` row in force from its `effective_from`, so a
period's usage before and after a move is priced at each plan's rates. A tenant's own limits
(tenant_limits) override the plan's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serve_app.platform.config import TenantLimits
from serve_app.platform.consent.policy import ConsentPolicy
from serve_app.platform.db import Database
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from serve_app.platform.models import (
    PlanRow,
    PlanVersionRow,
    TenantPlanRow,
    new_id,
    utcnow,
)
from serve_app.platform.tenants import find_tenant

#: What a plan can include besides model kinds; a key's endpoint family -> the feature it needs.
FEATURES = ("clone", "saved_voices", "jobs", "speech_sessions")
ENDPOINT_FEATURES = {"clone": "clone", "jobs": "jobs"}
#: The period of every included quota and of invoices.
PLAN_PERIOD = "month"

OveragePolicy = Literal["block", "bill"]
#: Money: integer minor units (cents for USD); a float is refused, never rounded.
Minor = Annotated[int, Field(ge=0, strict=True)]
Count = Annotated[int, Field(ge=0, strict=True)]


def model_kinds() -> tuple[str, ...]:
    from serve_app.app.args import MODEL_DEPLOYMENTS  # late: serve_app.args imports this package

    return MODEL_DEPLOYMENTS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncludedQuota(_Strict):
    """Included each calendar month (UTC); null: unlimited (never billed, never blocked)."""

    characters: Count | None = Field(0, description="Characters synthesized")
    audio_seconds: Count | None = Field(0, description="Seconds of audio produced")
    voice_clones: Count | None = Field(0, description="Voices saved (cloned or designed)")


class PlanPrices(_Strict):
    """Integer minor units of the configured currency (BILLING_CURRENCY)."""

    base_monthly: Minor = Field(0, description="Charged once per invoiced month")
    per_1k_characters: dict[str, Minor] = Field(
        default_factory=dict, description="Model kind -> price of 1,000 characters past the "
        "included quota (a kind not named: 0)")
    per_audio_minute: Minor = Field(0, description="A minute of audio past the included quota")
    per_saved_voice: Minor = Field(0, description="A voice saved past the included clones")
    per_job: Minor = Field(0, description="An async job submitted")


class PlanTerms(_Strict):
    requests_per_minute: int | None = Field(None, ge=1, description="null: unlimited")
    max_concurrent: int | None = Field(None, ge=1, description="null: unlimited")
    included: IncludedQuota = Field(default_factory=IncludedQuota)
    models: list[str] | None = Field(None, description="Model kinds it may use; null: all")
    features: list[str] | None = Field(None, description=f"Of {', '.join(FEATURES)}; null: all")
    prices: PlanPrices = Field(default_factory=PlanPrices)
    overage: OveragePolicy = Field("block", description="Past an included quota: block (429) "
                                   "or bill (served, billed as overage)")
    consent: ConsentPolicy | None = Field(None, description="Consent to clone a voice on this "
                                          "plan (a tenant's own policy overrides it); null: "
                                          "the deployment's clone.consent")

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [m for m in value if m not in model_kinds()]
            if unknown:
                raise ValueError(f"unknown model kind {unknown[0]!r}; allowed: "
                                 f"{', '.join(model_kinds())}")
        return value

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = [f for f in value if f not in FEATURES]
            if unknown:
                raise ValueError(f"unknown feature {unknown[0]!r}; allowed: {', '.join(FEATURES)}")
        return value

    @field_validator("prices")
    @classmethod
    def _priced_models(cls, value: PlanPrices) -> PlanPrices:
        unknown = [m for m in value.per_1k_characters if m not in model_kinds()]
        if unknown:
            raise ValueError(f"per_1k_characters names unknown model kind {unknown[0]!r}; "
                             f"allowed: {', '.join(model_kinds())}")
        return value


def parse_terms(data: dict) -> PlanTerms:
    """Terms from a JSON object, or InvalidRequest naming the field and what is allowed."""
    try:
        return PlanTerms.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "terms"
        raise InvalidRequest(f"plan terms: {field}: {first['msg']}", param=field) from None


@dataclass(frozen=True)
class PlanGrant:
    """The plan version a tenant is on: what it may use, and its terms."""

    plan_id: str
    plan_name: str
    version_id: str
    version: int
    terms: PlanTerms

    def require(self, *, model: str | None = None, endpoint: str | None = None,
                feature: str | None = None) -> None:
        """403 naming the model kind or feature this plan does not include."""
        models = self.terms.models
        if model is not None and models is not None and model not in models:
            raise PermissionDenied(
                f"the plan {self.plan_name!r} does not include the model {model} "
                f"(it includes: {', '.join(models) or 'none'})",
                param="model", code="model_not_in_plan")
        features = self.terms.features
        for needed in (ENDPOINT_FEATURES.get(endpoint or ""), feature):
            if needed is not None and features is not None and needed not in features:
                raise PermissionDenied(
                    f"the plan {self.plan_name!r} does not include the feature {needed} "
                    f"(it includes: {', '.join(features) or 'none'})",
                    param="feature", code="feature_not_in_plan")

    def as_dict(self) -> dict:
        return {"plan": self.plan_name, "plan_id": self.plan_id, "version": self.version,
                "version_id": self.version_id, "terms": self.terms.model_dump()}


def effective_limits(own: TenantLimits, grant: PlanGrant | None) -> TenantLimits:
    """The limits a tenant is held to: its own where set, else its plan's. A plan that blocks
    past its included quota turns that quota into the hard limit; one that bills does not."""
    if grant is None:
        return own
    terms = grant.terms
    blocks = terms.overage == "block"
    plan = TenantLimits(
        requests_per_minute=terms.requests_per_minute, max_concurrent=terms.max_concurrent,
        characters_per_period=terms.included.characters if blocks else None,
        audio_seconds_per_period=terms.included.audio_seconds if blocks else None,
        period=PLAN_PERIOD)
    merged = {field: own_value if own_value is not None else getattr(plan, field)
              for field, own_value in own.model_dump(exclude={"period"}).items()}
    own_quota = own.characters_per_period is not None or own.audio_seconds_per_period is not None
    return TenantLimits(**merged, period=own.period if own_quota else PLAN_PERIOD)


#: The tenant's plan move in force at a time, and that plan's version in force then (with the
#: plan's name): built once, run with bound values (`grant_at` runs on every usage row).
_MOVE_AT = (select(TenantPlanRow.plan_id)
            .where(TenantPlanRow.tenant_id == bindparam("tenant"),
                   TenantPlanRow.effective_from <= bindparam("at"))
            .order_by(TenantPlanRow.effective_from.desc(), TenantPlanRow.id.desc()).limit(1))
_VERSION_AT = (select(PlanVersionRow.id, PlanVersionRow.version, PlanVersionRow.terms,
                      PlanRow.name)
               .join(PlanRow, PlanRow.id == PlanVersionRow.plan_id)
               .where(PlanVersionRow.plan_id == bindparam("plan"),
                      PlanVersionRow.effective_from <= bindparam("at"))
               .order_by(PlanVersionRow.version.desc()).limit(1))
#: Parsed terms by plan version id: a version's terms never change (a change is a new version).
_TERMS: dict[str, PlanTerms] = {}
_TERMS_KEPT = 1024


def _terms(version_id: str, raw: dict) -> PlanTerms:
    terms = _TERMS.get(version_id)
    if terms is None:
        if len(_TERMS) >= _TERMS_KEPT:
            _TERMS.clear()
        terms = _TERMS[version_id] = PlanTerms.model_validate(raw)
    return terms


def grant_at(session: Session, tenant_id: str, at: datetime) -> PlanGrant | None:
    """The plan version in force for `tenant_id` at `at` (None: the tenant has no plan)."""
    connection = session.connection()
    plan_id = connection.execute(_MOVE_AT, {"tenant": tenant_id, "at": at}).scalar()
    if plan_id is None:
        return None
    row = connection.execute(_VERSION_AT, {"plan": plan_id, "at": at}).first()
    if row is None:
        return None
    version_id, version, terms, name = row
    return PlanGrant(plan_id, name, version_id, version, _terms(version_id, terms))


@dataclass(frozen=True)
class PlanInfo:
    id: str
    name: str
    archived_at: datetime | None
    created_at: datetime
    versions: tuple[tuple[int, str, datetime, PlanTerms], ...]  # (version, id, from, terms)

    @property
    def current(self) -> tuple[int, str, datetime, PlanTerms]:
        return self.versions[-1]

    def as_dict(self, *, all_versions: bool = False) -> dict:
        def version(v: tuple[int, str, datetime, PlanTerms]) -> dict:
            return {"version": v[0], "id": v[1], "effective_from": v[2].isoformat(),
                    "terms": v[3].model_dump()}

        out = {"id": self.id, "name": self.name, "archived": self.archived_at is not None,
               "archived_at": self.archived_at.isoformat() if self.archived_at else None,
               "created_at": self.created_at.isoformat(), "current": version(self.current)}
        if all_versions:
            out["versions"] = [version(v) for v in self.versions]
        return out


def _find_plan(session: Session, ref: str) -> PlanRow:
    plan = session.get(PlanRow, ref) or session.scalar(select(PlanRow).where(PlanRow.name == ref))
    if plan is None:
        raise NotFound(f"no plan {ref!r}", param="plan")
    return plan


def _info(session: Session, plan: PlanRow) -> PlanInfo:
    rows = session.scalars(select(PlanVersionRow).where(PlanVersionRow.plan_id == plan.id)
                           .order_by(PlanVersionRow.version)).all()
    return PlanInfo(plan.id, plan.name, plan.archived_at, plan.created_at,
                    tuple((r.version, r.id, r.effective_from, PlanTerms.model_validate(r.terms))
                          for r in rows))


class PlanCatalog:
    """Plans and tenants' moves between them (the admin side: runs on the admin connection)."""

    def __init__(self, db: Database):
        self._db = db

    def create(self, name: str, terms: PlanTerms, *, effective_from: datetime | None = None
               ) -> PlanInfo:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a plan name has 1 to 100 characters", param="name")
        at = effective_from or utcnow()
        try:
            with self._db.admin_transaction() as session:
                plan = PlanRow(id=new_id("plan"), name=name, created_at=at)
                session.add(plan)
                session.flush()
                session.add(PlanVersionRow(id=new_id("planv"), plan_id=plan.id, version=1,
                                           terms=terms.model_dump(mode="json"),
                                           effective_from=at, created_at=utcnow()))
                session.flush()
                return _info(session, plan)
        except IntegrityError as exc:
            raise Conflict(f"a plan named {name!r} exists", param="name") from exc

    def list(self, *, include_archived: bool = False) -> list[PlanInfo]:
        with self._db.admin_transaction() as session:
            query = select(PlanRow).order_by(PlanRow.created_at, PlanRow.id)
            if not include_archived:
                query = query.where(PlanRow.archived_at.is_(None))
            return [_info(session, p) for p in session.scalars(query).all()]

    def get(self, ref: str) -> PlanInfo:
        with self._db.admin_transaction() as session:
            return _info(session, _find_plan(session, ref))

    def new_version(self, ref: str, terms: PlanTerms, *, effective_from: datetime | None = None
                    ) -> PlanInfo:
        """New terms, in force from `effective_from` (default: now) for every tenant on the
        plan; rows written before keep the price they were given."""
        at = effective_from or utcnow()
        with self._db.admin_transaction() as session:
            plan = _find_plan(session, ref)
            if plan.archived_at is not None:
                raise Conflict(f"the plan {plan.name!r} is archived", param="plan")
            latest = _info(session, plan).current
            if at < latest[2]:
                raise InvalidRequest(f"effective_from must not precede version {latest[0]}'s "
                                     f"({latest[2].isoformat()})", param="effective_from")
            session.add(PlanVersionRow(id=new_id("planv"), plan_id=plan.id, version=latest[0] + 1,
                                       terms=terms.model_dump(mode="json"), effective_from=at,
                                       created_at=utcnow()))
            session.flush()
            return _info(session, plan)

    def archive(self, ref: str) -> PlanInfo:
        """No tenant can be moved to an archived plan; those on it stay until moved."""
        with self._db.admin_transaction() as session:
            plan = _find_plan(session, ref)
            plan.archived_at = plan.archived_at or utcnow()
            return _info(session, plan)

    def assign(self, tenant: str, plan_ref: str, *, effective_from: datetime | None = None
               ) -> PlanGrant:
        """Move `tenant` to the plan from `effective_from` (default: now) on."""
        at = effective_from or utcnow()
        with self._db.admin_transaction() as session:
            owner = find_tenant(session, tenant)
            plan = _find_plan(session, plan_ref)
            if plan.archived_at is not None:
                raise Conflict(f"the plan {plan.name!r} is archived: choose another",
                               param="plan")
            session.add(TenantPlanRow(tenant_id=owner.id, plan_id=plan.id, effective_from=at,
                                      created_at=utcnow()))
            session.flush()
            grant = grant_at(session, owner.id, at)
            if grant is None:
                raise InvalidRequest(f"the plan {plan.name!r} has no version in force at "
                                     f"{at.isoformat()}", param="effective_from")
            return grant

    def tenant_plan(self, tenant: str, at: datetime | None = None) -> PlanGrant | None:
        with self._db.admin_transaction() as session:
            return grant_at(session, find_tenant(session, tenant).id, at or utcnow())
