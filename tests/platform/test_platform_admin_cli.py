"""`qtts admin ...` against the database named by the environment."""

from __future__ import annotations

import json

import pytest
from platform_testing import platform_args  # noqa: I001 - tests/platform helper

from serve_app.cli import main
from serve_app.platform.crypto import Keyring, generate_key
from serve_app.platform.service import Platform


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
    assert admin("migrate")[1].strip() == "schema at revision 0003"
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
    voice = old.voices.create_clone(tenant.id, "v", make_prompt(), consent=True)
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
        blob = new_only.blobs.get(f"voices/{tenant.id}/{voice.id}/prompt")
        assert Keyring.key_id_of(blob) == new_key.split(":")[0]
        assert new_only.voices.prompt(tenant.id, voice.id).ref_text == make_prompt().ref_text
    finally:
        new_only.close()
