"""Safe voice cloning in the platform: consent statements (one-time, expiring, per tenant),
the consent policy (tenant, then plan, then deployment), erasure by destroying a voice's
data key, and the audit log (rows, no content)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from platform_testing import MARCH, RECORDED, TRANSCRIPT, make_prompt, terms  # noqa: I001

from deployments.args import CloneArgs
from serve_app.platform.consent import ConsentEvidence, ConsentPolicy, resolve_consent
from serve_app.platform.consent import statements as statements_module
from serve_app.platform.crypto import DataKey, DecryptionError
from serve_app.platform.errors import InvalidRequest, NotFound
from serve_app.platform.models import utcnow
from serve_app.platform.voices import Consent

RECORDING = b"RIFF-the-speaker-reading-the-statement"


def _refused_code(platform, tenant_id: str, code: str) -> str:
    with pytest.raises(InvalidRequest) as refused:
        platform.statements.check(tenant_id, code)
    assert refused.value.param == "consent_code"
    return refused.value.code


def test_a_statement_holds_its_code_in_the_requested_language(platform):
    tenant = platform.tenants.create("acme")
    en, de = platform.statements.issue(tenant.id), platform.statements.issue(tenant.id, "de")
    assert len(en.code) == 6 and en.code.isdigit()
    assert " ".join(en.code) in en.text and "I agree" in en.text
    assert "Zustimmungscode" in de.text and en.code != de.code
    assert en.expires_at - en.created_at == timedelta(seconds=CloneArgs().statement_ttl_s)
    with pytest.raises(InvalidRequest) as refused:
        platform.statements.issue(tenant.id, "xx")
    assert refused.value.param == "language" and "en, zh, de" in str(refused.value)


def test_a_code_is_used_once_and_only_by_its_tenant(platform):
    tenant, other = platform.tenants.create("acme"), platform.tenants.create("other")
    statement = platform.statements.issue(tenant.id)
    assert _refused_code(platform, other.id, statement.code) == "consent_code_unknown"
    assert platform.statements.check(tenant.id, statement.code).id == statement.id
    platform.statements.redeem(tenant.id, statement)
    assert _refused_code(platform, tenant.id, statement.code) == "consent_code_used"
    with pytest.raises(InvalidRequest):  # a second request racing for it loses
        platform.statements.redeem(tenant.id, statement)


def test_an_expired_code_is_refused(platform, monkeypatch):
    tenant = platform.tenants.create("acme")
    statement = platform.statements.issue(tenant.id)
    later = statement.expires_at + timedelta(seconds=1)
    monkeypatch.setattr(statements_module, "utcnow", lambda: later)
    assert _refused_code(platform, tenant.id, statement.code) == "consent_code_expired"
    with pytest.raises(InvalidRequest):
        platform.statements.redeem(tenant.id, statement)


def test_the_tenants_policy_overrides_its_plans_which_overrides_the_deployments(platform):
    clone = CloneArgs(consent="checked", consent_one_shot="none")
    assert resolve_consent("voices", None, None, clone) == "checked"
    assert resolve_consent("one_shot", None, None, clone) == "none"
    plan = ConsentPolicy(voices="recorded")
    assert resolve_consent("voices", None, plan, clone) == "recorded"
    assert resolve_consent("one_shot", None, plan, clone) == "none"  # the plan left it null
    tenant = ConsentPolicy(voices="none", one_shot="checked")
    assert resolve_consent("voices", tenant, plan, clone) == "none"
    assert resolve_consent("one_shot", tenant, plan, clone) == "checked"


def test_a_plans_and_a_tenants_consent_policy_reach_the_request_path(platform):
    platform.tenants.create("acme")
    platform.plans.create("studio", terms(consent={"voices": "recorded"}), effective_from=MARCH)
    platform.plans.assign("acme", "studio", effective_from=MARCH)
    principal = platform.keys.verify(platform.keys.create("acme").secret)

    async def levels():
        return (await platform.consent_level(principal, "voices"),
                await platform.consent_level(principal, "one_shot"))

    assert asyncio.run(levels()) == ("recorded", platform.clone.consent_one_shot)
    shown = platform.set_tenant_consent("acme", ConsentPolicy(voices="checked",
                                                               one_shot="recorded"))
    assert shown["consent"] == {"voices": "checked", "one_shot": "recorded"}
    assert asyncio.run(levels()) == ("checked", "recorded")


def _evidence(platform, tenant_id: str) -> ConsentEvidence:
    statement = platform.statements.issue(tenant_id)
    return ConsentEvidence(statement_id=statement.id, statement=statement.text,
                           code=statement.code, language="en",
                           issued_at=statement.created_at.isoformat(),
                           consented_at=utcnow().isoformat(), similarity=0.91, threshold=0.8,
                           recording=RECORDING)


def test_checked_consent_evidence_is_sealed_with_the_voice(platform):
    tenant = platform.tenants.create("acme")
    evidence = _evidence(platform, tenant.id)
    voice = platform.voices.create_clone(tenant.id, "v", make_prompt(),
                                         consent=Consent("checked", evidence))
    assert voice.as_dict()["consent_level"] == "checked"
    assert voice.as_dict()["consent_similarity"] == 0.91
    blob = platform.blobs.get(f"voices/{tenant.id}/{voice.id}/consent")
    assert RECORDING not in blob and evidence.code.encode() not in blob
    assert platform.voices.consent_evidence(tenant.id, voice.id) == evidence


def test_a_deleted_voices_blobs_cannot_be_decrypted_even_from_a_backup(platform):
    tenant = platform.tenants.create("acme")
    voice = platform.voices.create_clone(tenant.id, "v", make_prompt(),
                                         consent=Consent("checked", _evidence(platform,
                                                                              tenant.id)),
                                         reference_audio=b"RIFF-reference")
    parts = ("prompt", "audio", "consent")
    backup = {p: platform.blobs.get(f"voices/{tenant.id}/{voice.id}/{p}") for p in parts}
    with platform.db.admin_transaction() as session:  # a database backup, taken before
        from serve_app.platform.models import VoiceRow

        wrapped_before = session.get(VoiceRow, voice.id).data_key
    platform.voices.delete(tenant.id, voice.id)
    with pytest.raises(NotFound):
        platform.voices.prompt(tenant.id, voice.id)
    for part in parts:
        assert not platform.blobs.exists(f"voices/{tenant.id}/{voice.id}/{part}")
        with pytest.raises(DecryptionError):  # the service key alone opens none of them
            platform.keyring.decrypt(backup[part], f"voice:{tenant.id}:{voice.id}:{part}".encode())
    # only the wrapped data key (gone with the row) opens them: a backup of the blobs without
    # that row is noise; with an old database backup it would still open, which is why the
    # row, not the blobs, is what erasure deletes
    key = DataKey.unwrap(wrapped_before, platform.keyring,
                         f"voice:{tenant.id}:{voice.id}:data_key".encode())
    assert key.open(backup["audio"], f"voice:{tenant.id}:{voice.id}:audio".encode()) == b"RIFF-reference"
    with platform.db.admin_transaction() as session:
        assert session.get(VoiceRow, voice.id) is None


def test_the_audit_log_records_create_use_delete_without_content(platform):
    platform.tenants.create("acme")
    other = platform.keys.verify(platform.keys.create(platform.tenants.create("b").id).secret)
    created = platform.keys.create("acme")
    principal = platform.keys.verify(created.secret)

    async def act():
        voice = await platform.create_clone_voice(principal, "narrator", make_prompt(),
                                                  consent=RECORDED, request_id="req-1")
        await platform.resolve_voice(principal, "narrator", audited=True)
        await platform.delete_voice(principal, voice.id, request_id="req-3")
        return voice, await platform.audit_events(principal), await platform.audit_events(other)

    voice, events, others = asyncio.run(act())
    assert others == []
    assert [e.action for e in events] == ["voice.deleted", "voice.used", "voice.created"]
    for event in events:
        row = event.as_dict()
        assert row["voice_id"] == voice.id and row["api_key_id"] == principal.key_id
        assert row["service_key_id"] == platform.keyring.primary_id
        text = repr(row)
        assert TRANSCRIPT not in text and "narrator" not in text and "RIFF" not in text
    assert events[-1].request_id == "req-1" and events[0].request_id == "req-3"
    assert events[-1].detail == {"kind": "clone", "consent": "recorded"}
