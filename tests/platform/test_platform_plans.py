"""Plans and prices, as a spec: versioned plans, a cost on every usage row computed when it
is written, the plan's limits (a tenant's own override them), `block` and `bill` past the
included quota, and what a plan leaves out answering 403 naming it. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from platform_testing import MARCH, RECORDED, at, record, terms
from sqlalchemy import select

from serve_app.platform.config import TenantLimits
from serve_app.platform.errors import Conflict, InvalidRequest, LimitExceeded, PermissionDenied
from serve_app.platform.models import UsageRecordRow
from serve_app.platform.plans import parse_terms


def row(platform, request_id: str) -> UsageRecordRow:
    with platform.db.admin_transaction() as session:
        return session.scalar(select(UsageRecordRow).where(UsageRecordRow.request_id == request_id))


def test_a_usage_row_carries_the_cost_its_plan_version_says_per_model_kind_and_operation(platform):
    tenant = platform.tenants.create("acme")
    platform.plans.create("pro", terms(), effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=MARCH)
    # 150 characters against 100 included: 50 billed at 200 per 1,000 -> 10; 30 s of 60 s
    record(platform, tenant.id, "r1", at(2), characters=150, audio_seconds=30)
    # 1,000 VoiceDesign characters all past the quota -> 300; audio 30 + 45 s: 15 s past it,
    # 15,000 ms at 50 per minute = 12.5 -> 12 (rounded down on the running total)
    record(platform, tenant.id, "r2", at(3), model="VoiceDesign", characters=1000,
           audio_seconds=45)
    record(platform, tenant.id, "v1", at(4), model="VoiceClone", operation="voice")  # included
    record(platform, tenant.id, "v2", at(5), model="VoiceClone", operation="voice")  # 500
    record(platform, tenant.id, "j1", at(6), operation="job")  # 25
    # 5 more CustomVoice characters: 55 billed in all -> 11, of which 10 were charged -> 1
    record(platform, tenant.id, "r3", at(7), characters=5)
    # 15,000 more VoiceDesign ms: 30,000 in all -> 25, of which 12 were charged -> 13
    record(platform, tenant.id, "r4", at(8), model="VoiceDesign", audio_seconds=15)

    expected = {  # request id: (billable chars, billable ms, billable ops, cost)
        "r1": (50, 0, 0, 10), "r2": (1000, 15_000, 0, 312), "v1": (0, 0, 0, 0),
        "v2": (0, 0, 1, 500), "j1": (0, 0, 1, 25), "r3": (5, 0, 0, 1), "r4": (0, 15_000, 0, 13),
    }
    version_id = platform.plans.get("pro").current[1]
    for request_id, (chars, ms, ops, cost) in expected.items():
        r = row(platform, request_id)
        assert (r.billable_characters, r.billable_audio_ms, r.billable_operations, r.cost) == \
            (chars, ms, ops, cost), request_id
        assert r.cost == r.cost_characters + r.cost_audio + r.cost_operation
        assert r.plan_version_id == version_id
    assert row(platform, "r2").cost_characters == 300 and row(platform, "r2").cost_audio == 12


def test_a_row_written_twice_is_priced_and_counted_once(platform):
    tenant = platform.tenants.create("acme")
    platform.plans.create("pro", terms(included={"characters": 0}), effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=MARCH)
    first = record(platform, tenant.id, "r1", at(2), characters=1000)
    again = record(platform, tenant.id, "r1", at(2), characters=1000)
    assert first.recorded and not again.recorded
    assert platform.usage.summary(tenant.id, "2025-03").cost == 200


def test_a_price_change_mid_period_prices_earlier_rows_at_the_old_version(platform):
    tenant = platform.tenants.create("acme")
    cheap = terms(included={"characters": 0},
                  prices={"per_1k_characters": {"CustomVoice": 100}})
    platform.plans.create("pro", cheap, effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=MARCH)
    record(platform, tenant.id, "before", at(5), characters=1000)
    dear = terms(included={"characters": 0}, prices={"per_1k_characters": {"CustomVoice": 300}})
    plan = platform.plans.new_version("pro", dear, effective_from=at(10))
    assert [v[0] for v in plan.versions] == [1, 2]
    record(platform, tenant.id, "after", at(12), characters=1000)
    assert row(platform, "before").cost == 100 and row(platform, "after").cost == 300
    assert row(platform, "before").plan_version_id == plan.versions[0][1]
    assert row(platform, "after").plan_version_id == plan.versions[1][1]
    with pytest.raises(InvalidRequest, match="effective_from"):  # no rewriting the past
        platform.plans.new_version("pro", dear, effective_from=at(9))


def test_moving_a_tenant_prices_the_period_before_and_after_at_each_plans_rates(platform):
    tenant = platform.tenants.create("acme")
    platform.plans.create("basic", terms(included={"characters": 0},
                                         prices={"per_1k_characters": {"CustomVoice": 100}}),
                          effective_from=MARCH)
    platform.plans.create("studio", terms(included={"characters": 0},
                                          prices={"per_1k_characters": {"CustomVoice": 40}}),
                          effective_from=MARCH)
    platform.plans.assign("acme", "basic", effective_from=MARCH)
    record(platform, tenant.id, "on-basic", at(3), characters=2000)
    grant = platform.plans.assign("acme", "studio", effective_from=at(15))
    assert grant.plan_name == "studio"
    record(platform, tenant.id, "on-studio", at(20), characters=2000)
    assert (row(platform, "on-basic").cost, row(platform, "on-studio").cost) == (200, 80)


def test_a_tenants_own_limits_override_its_plans(platform):
    platform.tenants.create("acme", TenantLimits(requests_per_minute=2))
    platform.plans.create("pro", terms(overage="block"))
    platform.plans.assign("acme", "pro")
    principal = platform.keys.verify(platform.keys.create("acme").secret)
    assert principal.plan is not None and principal.plan.plan_name == "pro"
    assert principal.limits.requests_per_minute == 2  # its own
    assert principal.limits.max_concurrent == 4  # the plan's
    assert principal.limits.characters_per_period == 100  # block: the included quota
    assert principal.limits.period == "month"


def test_block_answers_429_naming_the_quota_and_when_it_resets(platform):
    platform.tenants.create("acme")
    platform.plans.create("starter", terms(overage="block"))
    platform.plans.assign("acme", "starter")
    principal = platform.keys.verify(platform.keys.create("acme").secret)

    async def main():
        admission = await platform.admit(principal, model="CustomVoice", endpoint="speech",
                                         characters=60)
        await platform.finish(admission, principal, request_id="r1", model="CustomVoice",
                              endpoint="speech", status="ok", characters=60, audio_seconds=1)
        with pytest.raises(LimitExceeded) as refused:
            await platform.admit(principal, model="CustomVoice", endpoint="speech",
                                 characters=50)
        return refused.value

    refused = asyncio.run(main())
    now = datetime.now(UTC)
    reset = (now.replace(year=now.year + 1, month=1) if now.month == 12 else
             now.replace(month=now.month + 1)).replace(day=1, hour=0, minute=0, second=0,
                                                        microsecond=0)
    assert refused.status == 429 and refused.code == "quota_exceeded"
    assert "100 characters this month" in refused.message
    assert f"resets at {reset.isoformat()}" in refused.message
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-RateLimit-Remaining-Characters"] == "40"


def test_bill_serves_past_the_quota_and_bills_the_overage(platform):
    tenant = platform.tenants.create("acme")
    platform.plans.create("payg", terms(overage="bill"))
    platform.plans.assign("acme", "payg")
    principal = platform.keys.verify(platform.keys.create("acme").secret)
    assert principal.limits.characters_per_period is None  # bill: not a limit

    async def main():
        for i, chars in enumerate((60, 50)):
            admission = await platform.admit(principal, model="CustomVoice", endpoint="speech",
                                             characters=chars)
            await platform.finish(admission, principal, request_id=f"r{i}", model="CustomVoice",
                                  endpoint="speech", status="ok", characters=chars)

    asyncio.run(main())
    assert row(platform, "r0").cost == 0
    assert row(platform, "r1").billable_characters == 10 and row(platform, "r1").cost == 2
    summary = platform.usage.summary(tenant.id, "month")
    assert summary.cost == 2 and summary.by_model["CustomVoice"]["cost"] == 2
    assert summary.included["characters"] == {"included": 100, "used": 110, "remaining": 0}
    assert summary.plan == {"name": "payg", "version": 1, "overage": "bill"}


def test_block_refuses_a_voice_past_the_included_clones(platform, tmp_path):
    from platform_testing import make_prompt

    platform.tenants.create("acme")
    platform.plans.create("starter", terms(overage="block"))
    platform.plans.assign("acme", "starter")
    principal = platform.keys.verify(platform.keys.create("acme").secret)

    async def main():
        await platform.create_clone_voice(principal, "first", make_prompt(), consent=RECORDED)
        with pytest.raises(LimitExceeded) as refused:
            await platform.create_designed_voice(principal, "second", make_prompt(1),
                                                 description="warm")
        return refused.value

    refused = asyncio.run(main())
    assert refused.status == 429 and "1 voice clones this month" in refused.message
    assert "resets at" in refused.message and refused.param == "voice_clones"
    assert [v.name for v in platform.voices.list(principal.tenant_id)] == ["first"]


def test_a_plan_that_excludes_clone_answers_403_naming_the_feature(platform):
    from platform_testing import make_prompt

    platform.tenants.create("acme")
    platform.plans.create("voices-off", terms(features=["jobs", "saved_voices"],
                                              models=["CustomVoice", "VoiceClone"]))
    platform.plans.assign("acme", "voices-off")
    principal = platform.keys.verify(platform.keys.create("acme").secret)

    async def main():
        with pytest.raises(PermissionDenied) as clone:
            await platform.admit(principal, model="VoiceClone", endpoint="clone", characters=5)
        with pytest.raises(PermissionDenied) as saved_clone:
            await platform.create_clone_voice(principal, "x", make_prompt(), consent=RECORDED)
        with pytest.raises(PermissionDenied) as design:
            await platform.admit(principal, model="VoiceDesign", endpoint="design")
        await platform.admit(principal, model="CustomVoice", endpoint="speech")  # included
        return clone.value, saved_clone.value, design.value

    clone, saved_clone, design = asyncio.run(main())
    for refused in (clone, saved_clone):
        assert refused.status == 403 and refused.code == "feature_not_in_plan"
        assert "does not include the feature clone" in refused.message
        assert refused.param == "feature"
    assert design.code == "model_not_in_plan" and "model VoiceDesign" in design.message
    with pytest.raises(PermissionDenied, match="speech_sessions"):
        principal.require(endpoint="speech", feature="speech_sessions")


def test_plan_terms_take_integer_money_and_known_names_only():
    with pytest.raises(InvalidRequest) as money:
        parse_terms({"prices": {"per_job": 1.5}})
    assert money.value.param == "prices.per_job"
    with pytest.raises(InvalidRequest, match="allowed: clone, saved_voices, jobs, speech_sessions"):
        parse_terms({"features": ["karaoke"]})
    with pytest.raises(InvalidRequest, match="allowed: CustomVoice, VoiceDesign, VoiceClone"):
        parse_terms({"prices": {"per_1k_characters": {"tts-9": 1}}})
    with pytest.raises(InvalidRequest, match="overage"):
        parse_terms({"overage": "shrug"})
    assert parse_terms({}).overage == "block"


def test_plans_are_created_listed_versioned_archived_and_assigned(platform):
    platform.tenants.create("acme")
    created = platform.plans.create("pro", terms())
    assert [p.name for p in platform.plans.list()] == ["pro"]
    with pytest.raises(Conflict):
        platform.plans.create("pro", terms())
    bumped = platform.plans.new_version(created.id, terms(prices={"per_job": 30}))
    assert bumped.current[0] == 2 and bumped.current[3].prices.per_job == 30
    assert platform.plans.get("pro").as_dict(all_versions=True)["versions"][0]["version"] == 1
    platform.plans.archive("pro")
    assert platform.plans.list() == [] and len(platform.plans.list(include_archived=True)) == 1
    with pytest.raises(Conflict, match="archived"):
        platform.plans.assign("acme", "pro")
    assert platform.plans.tenant_plan("acme") is None
