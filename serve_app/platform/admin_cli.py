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
    qtts admin create-plan NAME --terms '{"included": {...}, "prices": {...}}' | @terms.json
    qtts admin list-plans [--archived]
    qtts admin show-plan PLAN
    qtts admin new-plan-version PLAN --terms JSON|@FILE
    qtts admin archive-plan PLAN
    qtts admin assign-plan TENANT PLAN
    qtts admin set-webhook TENANT URL [--secret S]
    qtts admin set-consent TENANT [--voices checked|recorded|none|inherit]
                                  [--one-shot checked|recorded|none|inherit]
    qtts admin close-period YYYY-MM
    qtts admin export-usage YYYY-MM [--output FILE]

Settings come from the environment (DATABASE_URL, BLOB_STORE_URL, VOICE_ENCRYPTION_KEYS,
API_KEY_PEPPER, ...; docs/platform.md), as the serving replicas read them. TENANT is an id or
a name, PLAN an id or a name; plan terms are JSON (serve_app.platform.plans.PlanTerms; money
in integer minor units of BILLING_CURRENCY). A new key is printed once, on stdout, and
nowhere else.
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


def _terms(raw: str):
    from pathlib import Path

    from serve_app.platform.errors import InvalidRequest
    from serve_app.platform.plans import parse_terms

    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"--terms must be a JSON object or @FILE with one ({exc})",
                             param="terms") from None
    if not isinstance(data, dict):
        raise InvalidRequest("--terms must be a JSON object", param="terms")
    return parse_terms(data)


def _consent(args: argparse.Namespace):
    from serve_app.platform.consent import ConsentPolicy

    def level(value: str | None) -> str | None:
        return None if value in (None, "inherit") else value

    return ConsentPolicy(voices=level(args.voices), one_shot=level(args.one_shot))


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
        elif command == "create-plan":
            _print(platform.plans.create(args.name, _terms(args.terms)).as_dict(all_versions=True))
        elif command == "list-plans":
            _print([p.as_dict() for p in platform.plans.list(include_archived=args.archived)])
        elif command == "show-plan":
            _print(platform.plans.get(args.plan).as_dict(all_versions=True))
        elif command == "new-plan-version":
            _print(platform.plans.new_version(args.plan, _terms(args.terms)).as_dict(
                all_versions=True))
        elif command == "archive-plan":
            _print(platform.plans.archive(args.plan).as_dict())
        elif command == "assign-plan":
            _print(platform.plans.assign(args.tenant, args.plan).as_dict())
        elif command == "set-webhook":
            _print(platform.set_tenant_webhook(args.tenant, args.url, args.secret))
        elif command == "set-consent":
            _print(platform.set_tenant_consent(args.tenant, _consent(args)))
        elif command == "close-period":
            _print([i.as_dict() for i in platform.invoices.close_period(args.period)])
        elif command == "export-usage":
            from serve_app.platform.invoices import to_jsonl

            text = to_jsonl(platform.invoices.export(args.period))
            if args.output:
                with open(args.output, "w", encoding="utf-8") as out:
                    out.write(text)
            else:
                sys.stdout.write(text)
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

    terms_help = "plan terms: a JSON object, or @FILE holding one"
    p = commands.add_parser("create-plan", help="add a plan (its version 1)")
    p.add_argument("name")
    p.add_argument("--terms", required=True, help=terms_help)
    p = commands.add_parser("list-plans", help="plans and their current terms")
    p.add_argument("--archived", action="store_true", help="include archived plans")
    p = commands.add_parser("show-plan", help="a plan with every version")
    p.add_argument("plan")
    p = commands.add_parser("new-plan-version",
                            help="new terms for a plan, in force from now (past rows keep "
                                 "their price)")
    p.add_argument("plan")
    p.add_argument("--terms", required=True, help=terms_help)
    p = commands.add_parser("archive-plan", help="no tenant may be moved to it any more")
    p.add_argument("plan")
    p = commands.add_parser("assign-plan", help="move a tenant to a plan, from now on")
    p.add_argument("tenant")
    p.add_argument("plan")
    p = commands.add_parser("set-webhook", help="a tenant's webhook for quota warnings")
    p.add_argument("tenant")
    p.add_argument("url")
    p.add_argument("--secret", help="signing secret (default: made and printed once)")
    levels = ["checked", "recorded", "none", "inherit"]
    p = commands.add_parser("set-consent", help="a tenant's consent policy for cloning "
                                                 "(inherit: its plan's, else the deployment's)")
    p.add_argument("tenant")
    p.add_argument("--voices", choices=levels, default="inherit",
                   help="saved clone voices (POST /v1/voices)")
    p.add_argument("--one-shot", choices=levels, default="inherit",
                   help="one-shot clones (POST /v1/audio/clone)")
    p = commands.add_parser("close-period", help="make every tenant's invoice of a month "
                                                  "(idempotent)")
    p.add_argument("period", help="YYYY-MM (a month that has ended)")
    p = commands.add_parser("export-usage", help="a closed month's billed usage as JSONL "
                                                  "usage records for a payment provider")
    p.add_argument("period", help="YYYY-MM")
    p.add_argument("--output", help="write to this file (default: stdout)")
