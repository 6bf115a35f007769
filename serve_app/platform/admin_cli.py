"""`qtts admin ...`: tenants, keys, usage, migrations and key rotation from the command line.

    qtts admin migrate
    qtts admin create-tenant NAME [--rpm N] [--concurrent N] [--characters N]
                                  [--audio-seconds S] [--period month|day]
    qtts admin set-limits TENANT [same options]
    qtts admin list-tenants
    qtts admin create-key TENANT [--name NAME] [--scope model:CustomVoice --scope endpoint:jobs]
    qtts admin list-keys TENANT
    qtts admin revoke-key KEY_ID
    qtts admin usage TENANT [--period month|day|YYYY-MM|YYYY-MM-DD]
    qtts admin rotate-voice-key
    qtts admin generate-voice-key

Settings come from the environment (DATABASE_URL, BLOB_STORE_URL, VOICE_ENCRYPTION_KEYS,
API_KEY_PEPPER, ...; docs/platform.md), as the serving replicas read them. TENANT is an id or
a name. A new key is printed once, on stdout, and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import sys

from serve_app.platform.config import PlatformArgs, TenantLimits


def _settings() -> PlatformArgs:
    from serve_app.app.args import AppArgs
    from serve_app.app.settings import apply_environment

    return apply_environment(AppArgs()).platform


def _open(migrate: bool = False):
    from serve_app.platform.service import Platform

    return Platform.open(_settings(), migrate=migrate)


def _limits(args: argparse.Namespace) -> TenantLimits | None:
    values = {
        "requests_per_minute": args.rpm, "max_concurrent": args.concurrent,
        "characters_per_period": args.characters, "audio_seconds_per_period": args.audio_seconds,
    }
    if all(v is None for v in values.values()) and args.period is None:
        return None
    return TenantLimits(**values, period=args.period or "month")


def _print(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _run(args: argparse.Namespace) -> int:
    from serve_app.platform.crypto import generate_key
    from serve_app.platform.errors import PlatformError

    if args.admin_command == "generate-voice-key":
        print(generate_key())
        return 0
    try:
        platform = _open(migrate=args.admin_command == "migrate")
    except PlatformError as exc:
        print(f"qtts admin: {exc.message}", file=sys.stderr)
        return 2
    try:
        command = args.admin_command
        if command == "migrate":
            print(f"schema at revision {platform.db.current_revision()}")
        elif command == "create-tenant":
            _print(platform.tenants.create(args.name, _limits(args)).as_dict())
        elif command == "set-limits":
            _print(platform.tenants.set_limits(args.tenant, _limits(args) or TenantLimits()).as_dict())
        elif command == "list-tenants":
            _print([t.as_dict() for t in platform.tenants.list()])
        elif command == "create-key":
            created = platform.keys.create(args.tenant, name=args.name, scopes=args.scope)
            _print(created.info.as_dict())
            print(f"\nAPI key (shown once, store it now): {created.secret}")
        elif command == "list-keys":
            _print([k.as_dict() for k in platform.keys.list(args.tenant)])
        elif command == "revoke-key":
            _print(platform.keys.revoke(args.key_id).as_dict())
        elif command == "usage":
            tenant = platform.tenants.get(args.tenant)
            _print(platform.usage.summary(tenant.id, args.period).as_dict())
        elif command == "rotate-voice-key":
            counts = platform.rotate_voice_key()
            _print({"primary_key_id": platform.keyring.primary_id, "reencrypted": counts})
        return 0
    except PlatformError as exc:
        print(f"qtts admin: {exc.message}", file=sys.stderr)
        return 1
    finally:
        platform.close()


def add_admin_parser(sub: argparse._SubParsersAction) -> None:
    """Add `qtts admin` and its commands to the top-level parser's subcommands."""
    admin = sub.add_parser("admin", help="manage tenants, API keys, usage and the platform schema")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    admin.set_defaults(func=_run)

    def limit_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rpm", type=int, help="requests per minute")
        p.add_argument("--concurrent", type=int, help="requests in flight")
        p.add_argument("--characters", type=int, help="characters per period")
        p.add_argument("--audio-seconds", type=float, help="seconds of audio per period")
        p.add_argument("--period", choices=["month", "day"], help="quota period (default month)")

    commands.add_parser("migrate", help="create or upgrade the database schema")
    p = commands.add_parser("create-tenant", help="add a tenant")
    p.add_argument("name")
    limit_options(p)
    p = commands.add_parser("set-limits", help="replace a tenant's limits (none given: unlimited)")
    p.add_argument("tenant")
    limit_options(p)
    commands.add_parser("list-tenants", help="list tenants and their limits")
    p = commands.add_parser("create-key", help="issue an API key (printed once)")
    p.add_argument("tenant")
    p.add_argument("--name", help="a label for the key")
    p.add_argument("--scope", action="append", default=[],
                   help="model:NAME or endpoint:NAME; repeat; none: everything")
    p = commands.add_parser("list-keys", help="a tenant's keys (prefixes only)")
    p.add_argument("tenant")
    p = commands.add_parser("revoke-key", help="revoke a key by its id")
    p.add_argument("key_id")
    p = commands.add_parser("usage", help="a tenant's usage summary")
    p.add_argument("tenant")
    p.add_argument("--period", default="month", help="month, day, YYYY-MM or YYYY-MM-DD")
    commands.add_parser("rotate-voice-key",
                        help="re-encrypt voices and webhook secrets with the newest key")
    commands.add_parser("generate-voice-key", help="print a new VOICE_ENCRYPTION_KEYS entry")
