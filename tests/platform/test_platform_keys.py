"""API keys: random, shown once, stored as hashes, revocable, scoped; secrets never leak."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from serve_app.app.args import AppArgs
from serve_app.app.settings import apply_environment
from serve_app.platform.errors import AuthenticationError, InvalidRequest, PermissionDenied
from serve_app.platform.models import ApiKey


def test_a_key_is_stored_only_as_a_hash(platform):
    platform.tenants.create("acme")
    created = platform.keys.create("acme", name="ci")
    assert created.secret.startswith("qtts_") and len(created.secret) > 40
    with platform.db.admin_transaction() as session:
        row = session.scalar(select(ApiKey))
        stored = [str(v) for v in (row.id, row.key_hash, row.prefix, row.name, row.scopes)]
    assert all(created.secret not in value for value in stored)
    assert row.key_hash == platform.keys.hash(created.secret)
    assert created.secret.startswith(row.prefix)
    assert created.secret not in repr(created)
    assert all("key" not in k.as_dict() for k in platform.keys.list("acme"))


def test_bearer_and_x_api_key_headers_authenticate_the_tenant(platform):
    tenant = platform.tenants.create("acme")
    secret = platform.keys.create("acme").secret
    for headers in ({"Authorization": f"Bearer {secret}"}, {"x-api-key": secret}):
        principal = platform.keys.authenticate(headers)
        assert principal.tenant_id == tenant.id and principal.tenant_name == "acme"


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer qtts_not-a-real-key"}, "invalid_api_key"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
])
def test_missing_or_unknown_keys_are_401(platform, headers, code):
    with pytest.raises(AuthenticationError) as caught:
        platform.keys.authenticate(headers)
    assert caught.value.status == 401 and caught.value.code == code
    assert "WWW-Authenticate" in caught.value.headers


def test_a_revoked_key_stops_working(platform):
    platform.tenants.create("acme")
    created = platform.keys.create("acme")
    platform.keys.verify(created.secret)
    platform.keys.revoke(created.info.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        platform.keys.verify(created.secret)
    assert platform.keys.list("acme")[0].revoked_at is not None


def test_a_disabled_tenant_is_refused(platform):
    platform.tenants.create("acme")
    secret = platform.keys.create("acme").secret
    platform.tenants.set_disabled("acme", True)
    with pytest.raises(PermissionDenied):
        platform.keys.verify(secret)


def test_scopes_limit_a_key_to_models_and_endpoints(platform):
    platform.tenants.create("acme")
    secret = platform.keys.create("acme", scopes=["model:customvoice", "endpoint:speech"]).secret
    principal = platform.keys.verify(secret)
    assert principal.scopes == ("model:CustomVoice", "endpoint:speech")
    principal.require(model="CustomVoice", endpoint="speech")
    with pytest.raises(PermissionDenied, match="VoiceClone"):
        principal.require(model="VoiceClone", endpoint="speech")
    with pytest.raises(PermissionDenied, match="jobs"):
        principal.require(model="CustomVoice", endpoint="jobs")
    unscoped = platform.keys.verify(platform.keys.create("acme").secret)
    assert unscoped.allows(model="VoiceClone", endpoint="jobs")


def test_an_unknown_scope_lists_the_valid_ones(platform):
    platform.tenants.create("acme")
    with pytest.raises(InvalidRequest, match="model:VoiceDesign"):
        platform.keys.create("acme", scopes=["model:tts-2"])


def test_a_pepper_changes_the_stored_hash(platform):
    from serve_app.platform.keys import ApiKeys

    other = ApiKeys(platform.db, b"another-pepper")
    assert other.hash("qtts_x") != platform.keys.hash("qtts_x")


def test_keys_and_secrets_never_reach_logs_or_reprs(platform, caplog):
    caplog.set_level(logging.DEBUG)
    platform.tenants.create("acme")
    created = platform.keys.create("acme")
    platform.keys.verify(created.secret)
    with pytest.raises(AuthenticationError):
        platform.keys.verify(created.secret + "x")
    shown = caplog.text + repr(platform) + repr(platform.args) + str(platform.args)
    for secret in (created.secret, "test-admin-token", "test-pepper",
                   platform.args.voice_encryption_keys.get_secret_value().split(":")[1]):
        assert secret not in shown


def test_secrets_from_the_environment_survive_the_settings_layer_masked():
    env = {"ADMIN_TOKEN": "tok-123", "DATABASE_URL": "postgresql://u:pw-456@db/qtts",
           "AUTH_ENABLED": "false", "REDIS_URL": "redis://:pw-789@r:6379/0"}
    args = apply_environment(AppArgs(), env)
    assert args.platform.admin_token.get_secret_value() == "tok-123"
    assert args.platform.auth_enabled is False
    again = apply_environment(args, {})  # the settings layer round-trips through JSON
    assert again.platform.database_url.get_secret_value() == env["DATABASE_URL"]
    for secret in ("tok-123", "pw-456", "pw-789"):
        assert secret not in repr(again) and secret not in str(again.platform)
