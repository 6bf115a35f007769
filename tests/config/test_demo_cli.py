"""`qtts demo` options (issue 8, item 12: configs/cpu-tiny.yaml promised a `--open` flag)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from serve_app.tools.cli import (
    DEFAULT_PROFILE,
    PortInUse,
    _demo_auth,
    _demo_environment,
    build_parser,
    check_port_free,
    main,
    port_holder,
    qtts_command,
)
from serve_app.tools.profiles import load_profile


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


def test_a_port_held_with_so_reuseport_is_refused_naming_the_holder():
    """Serve's proxy listens with SO_REUSEPORT: a second demo binding the same way would
    share the port. The check binds without it, so a running demo's port is refused."""
    with socket.socket() as proxy:
        proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        proxy.bind(("0.0.0.0", 0))
        proxy.listen()
        port = proxy.getsockname()[1]
        with pytest.raises(PortInUse) as refused:
            check_port_free("127.0.0.1", port)
        message = str(refused.value)
        assert f"Port {port} on 127.0.0.1 is already in use by pid {os.getpid()} (" in message
        assert f"--port {port + 1}" in message
        assert port_holder(port).startswith(f"pid {os.getpid()} ")
        assert main(["demo", "--port", str(port)]) == 1  # before Ray or checkpoints
    check_port_free("127.0.0.1", port)  # free again once the holder closed


def test_the_banner_names_qtts_as_the_shell_can_call_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no qtts on PATH: the venv's script path
    assert qtts_command().endswith("bin/qtts")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert qtts_command() == "qtts"


def test_the_banner_prints_a_key_only_where_the_demo_made_one():
    from serve_app.tools.cli import _DemoAuth, demo_banner

    base = "http://127.0.0.1:8123"
    opened = demo_banner(base, 1.0, _DemoAuth("\n  AUTHENTICATION IS OFF\n"), "/logs", "x:1", "token")
    assert "QTTS_KEY" not in opened and f"QTTS_URL={base} " in opened
    keyed = demo_banner(base, 1.0, _DemoAuth("", "-H 'Authorization: Bearer qtts_k' ", "qtts_k"),
                        "/logs", "x:1", "token")
    assert f"QTTS_URL={base} QTTS_KEY=qtts_k " in keyed
    # every link opens in a browser without a key (the seed's /api/voices needs one)
    assert f"{base}/v1/audio/voices" in keyed and "/api/voices" not in keyed


def test_wyoming_flag_serves_it_trusting_this_machine_and_prints_its_address(monkeypatch):
    from serve_app.tools.cli import wyoming_banner

    for name in ("WYOMING_ENABLED", "WYOMING_HOST", "WYOMING_PORT", "TRUSTED_NETWORKS"):
        _unset_but_restored(monkeypatch, name)
    profile = load_profile(DEFAULT_PROFILE).args
    assert wyoming_banner(profile) == ""  # off unless asked for
    args = build_parser().parse_args(["demo", "--wyoming"])
    _demo_environment(args)
    banner = wyoming_banner(profile)
    assert "Wyoming (Home Assistant): tcp://127.0.0.1:10200" in banner
    assert "'home-assistant'" in banner and "127.0.0.0/8" in banner
