"""`qtts demo` options (issue 8, item 12: configs/cpu-tiny.yaml promised a `--open` flag)."""

from __future__ import annotations

from serve_app.cli import DEFAULT_PROFILE, _demo_auth, _demo_environment, build_parser
from serve_app.profiles import load_profile


def _unset_but_restored(monkeypatch, name: str) -> None:
    """Absent during the test, and whatever the demo sets there is undone afterwards (a bare
    delenv of an absent variable records nothing to undo)."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def test_open_flag_runs_the_demo_without_keys_as_auth_enabled_false_does(monkeypatch, tmp_path):
    _unset_but_restored(monkeypatch, "AUTH_ENABLED")
    monkeypatch.setenv("QTTS_DATA_DIR", str(tmp_path))
    args = build_parser().parse_args(["demo", "--open", "--port", "8123"])
    assert args.open and args.port == 8123
    _demo_environment(args)
    auth = _demo_auth(load_profile(DEFAULT_PROFILE).args)
    assert "AUTHENTICATION IS OFF" in auth.banner and auth.header == ""
    assert not (tmp_path / "platform.db").exists()  # no tenant, no key made


def test_without_the_flag_the_demo_makes_a_tenant_and_prints_a_key(monkeypatch, tmp_path):
    _unset_but_restored(monkeypatch, "AUTH_ENABLED")
    monkeypatch.setenv("QTTS_DATA_DIR", str(tmp_path))
    args = build_parser().parse_args(["demo"])
    assert not args.open
    _demo_environment(args)
    auth = _demo_auth(load_profile(DEFAULT_PROFILE).args)
    assert "Authentication is ON" in auth.banner and "qtts_" in auth.header
