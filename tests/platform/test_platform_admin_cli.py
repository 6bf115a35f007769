"""`qtts admin ...` against the database named by the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from platform_testing import RECORDED, platform_args  # noqa: I001 - tests/platform helper

from serve_app.platform.crypto import DataKey, generate_key
from serve_app.platform.models import VoiceRow
from serve_app.platform.service import Platform
from serve_app.tools.cli import main

#: The newest migration (alembic/versions/NNNN_*.py): what `qtts admin migrate` reaches
HEAD_REVISION = max(p.name.split("_")[0] for p in
                    (Path(__file__).parents[2] / "alembic" / "versions").glob("[0-9]*_*.py"))


@pytest.fixture
def admin(monkeypatch, tmp_path, capsys):
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    key = generate_key()
    for name, value in {"DATABASE_URL": database_url, "QTTS_DATA_DIR": str(tmp_path),
                        "VOICE_ENCRYPTION_KEYS": key, "API_KEY_PEPPER": "cli-pepper"}.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["admin", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    run.database_url, run.key, run.tmp_path = database_url, key, tmp_path
    return run


def test_migrate_create_tenant_and_key_then_list_revoke_and_usage(admin):
    assert admin("migrate")[1].strip() == f"schema at revision {HEAD_REVISION}"
    code, out, _ = admin("create-tenant", "acme", "--rpm", "60", "--characters", "5000")
    tenant = json.loads(out)
    assert code == 0 and tenant["limits"]["requests_per_minute"] == 60
    code, out, _ = admin("create-key", "acme", "--scope", "model:CustomVoice", "--name", "ci")
    secret = out.rsplit(":", 1)[1].strip()
    assert code == 0 and secret.startswith("qtts_") and out.count(secret) == 1
    code, out, _ = admin("list-keys", "acme")
    keys = json.loads(out)
    assert secret not in out and keys[0]["scopes"] == ["model:CustomVoice"]
    assert json.loads(admin("revoke-key", keys[0]["id"])[1])["revoked_at"]
    usage = json.loads(admin("usage", "acme", "--period", "month")[1])
    assert usage["tenant_id"] == tenant["id"] and usage["requests"] == 0
    assert [t["name"] for t in json.loads(admin("list-tenants")[1])] == ["acme"]


def test_admin_errors_are_one_line_with_a_nonzero_exit(admin):
    admin("migrate")
    code, out, err = admin("create-key", "nobody")
    assert code == 1 and out == "" and "no tenant 'nobody'" in err


def test_rotate_voice_key_reseals_voices_with_the_newest_key(admin, monkeypatch):
    from platform_testing import make_prompt

    admin("migrate")
    old = Platform.open(platform_args(admin.database_url, admin.tmp_path,
                                      voice_encryption_keys=admin.key))
    tenant = old.tenants.create("acme")
    voice = old.voices.create_clone(tenant.id, "v", make_prompt(), consent=RECORDED)
    blob_before = old.blobs.get(f"voices/{tenant.id}/{voice.id}/prompt")
    old.close()
    new_key = generate_key()
    monkeypatch.setenv("VOICE_ENCRYPTION_KEYS", f"{new_key},{admin.key}")
    code, out, _ = admin("rotate-voice-key")
    report = json.loads(out)
    assert code == 0 and report["reencrypted"]["voices"] == 1
    assert report["primary_key_id"] == new_key.split(":")[0]
    new_only = Platform.open(platform_args(admin.database_url, admin.tmp_path,
                                           voice_encryption_keys=new_key))
    try:
        # only the voice's data key was re-wrapped: its sealed blob is byte for byte the same
        assert new_only.blobs.get(f"voices/{tenant.id}/{voice.id}/prompt") == blob_before
        with new_only.db.admin_transaction() as session:
            wrapped = session.get(VoiceRow, voice.id).data_key
        assert DataKey.wrapped_key_id(wrapped) == new_key.split(":")[0]
        assert new_only.voices.prompt(tenant.id, voice.id).ref_text == make_prompt().ref_text
    finally:
        new_only.close()


def test_plans_close_period_and_export_from_the_command_line(admin, tmp_path):
    from platform_testing import MARCH, at, record, terms

    assert admin("migrate")[0] == 0
    admin("create-tenant", "acme")
    terms_file = tmp_path / "pro.json"
    terms_file.write_text(json.dumps({"included": {"characters": 100},
                                      "prices": {"per_1k_characters": {"CustomVoice": 200},
                                                 "base_monthly": 1000}, "overage": "bill"}))
    code, out, _ = admin("create-plan", "pro", "--terms", f"@{terms_file}")
    assert code == 0 and json.loads(out)["current"]["terms"]["prices"]["base_monthly"] == 1000
    code, _, err = admin("create-plan", "cheap", "--terms", '{"prices": {"per_job": 0.5}}')
    assert code == 1 and "prices.per_job" in err
    code, out, _ = admin("new-plan-version", "pro", "--terms", '{"overage": "block"}')
    assert code == 0 and json.loads(out)["current"]["version"] == 2
    assert [p["name"] for p in json.loads(admin("list-plans")[1])] == ["pro"]
    code, out, _ = admin("assign-plan", "acme", "pro")
    assert code == 0 and json.loads(out)["plan"] == "pro"
    assert admin("archive-plan", "pro")[0] == 0
    assert json.loads(admin("list-plans")[1]) == []
    assert json.loads(admin("show-plan", "pro")[1])["archived"] is True

    # a past month with usage on a plan (written through the platform: the CLI has no clock)
    platform = Platform.open(platform_args(admin.database_url, admin.tmp_path,
                                           voice_encryption_keys=admin.key,
                                           api_key_pepper="cli-pepper"))
    try:
        platform.tenants.create("beta")
        platform.plans.create("old", terms(), effective_from=MARCH)
        platform.plans.assign("beta", "old", effective_from=MARCH)
        record(platform, platform.tenants.get("beta").id, "r1", at(3), characters=1100)
    finally:
        platform.close()
    code, first, _ = admin("close-period", "2025-03")
    assert code == 0
    assert admin("close-period", "2025-03")[1] == first  # idempotent
    invoice = json.loads(first)[0]
    assert invoice["tenant"] == "beta" and invoice["total"] == 1900 + 200
    code, out, _ = admin("export-usage", "2025-03")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["meter"], r["quantity"]) for r in records] == [
        ("base_fee", 1), ("characters.CustomVoice", 1000)]
    code, _, err = admin("export-usage", "2025-02")
    assert code == 1 and "close the period first" in err
