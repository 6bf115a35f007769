"""Who must consent before a voice is cloned, decided once: a tenant's own policy, else its
plan's, else the deployment's (`clone.consent`, `clone.consent_one_shot`).

Levels (deployments.args.ConsentLevel): `checked` (a consent recording of the speaker reading
an issued statement, whose speaker must match the reference's), `recorded` (consent=true,
its time recorded), `none`. `voices` applies to saved clone voices (POST /v1/voices),
`one_shot` to POST /v1/audio/clone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.args import CloneArgs, ConsentLevel

ConsentUse = Literal["voices", "one_shot"]


class ConsentPolicy(BaseModel):
    """A tenant's or plan's consent policy; a level left null is inherited (plan, then the
    deployment's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voices: ConsentLevel | None = Field(
        None, description="Saved clone voices (POST /v1/voices); null: inherited")
    one_shot: ConsentLevel | None = Field(
        None, description="One-shot clones (POST /v1/audio/clone); null: inherited")


def resolve_consent(use: ConsentUse, tenant: ConsentPolicy | None,
                    plan: ConsentPolicy | None, clone: CloneArgs) -> ConsentLevel:
    """The level in force for `use`: the tenant's, else the plan's, else the deployment's."""
    for policy in (tenant, plan):
        level = getattr(policy, use) if policy is not None else None
        if level is not None:
            return level
    return clone.consent if use == "voices" else clone.consent_one_shot
