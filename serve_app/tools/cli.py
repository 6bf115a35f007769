"""`qtts`: run the CPU demo, build tiny checkpoints, check configs.

    qtts demo [--port 8000] [--host 127.0.0.1] [--profile configs/cpu-tiny.yaml] [--open]
              [--wyoming]  (also Home Assistant's Wyoming server, on 10200 by default)
    qtts make-tiny-models DIR
    qtts check-config FILE...
    qtts cluster-manifest VALUES [-o FILE] [--image IMAGE] [--check]
    qtts admin COMMAND ...      (tenants, API keys, usage, migrations: serve_app/platform/admin_cli.py)
    qtts say "text" [--voice V] [--model M] [--instructions I] [-o out.mp3] [--stream] [--job]
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import yaml

from serve_app.tools.ray_env import apply_serve_env

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE = REPO_ROOT / "configs" / "cpu-tiny.yaml"
DEMO_TEXT = "其实我真的有发现，我是一个特别善于观察别人情绪的人。"


def _quiet_environment() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def start_graph(
    profile_path: Path, host: str, port: int, num_cpus: int | None = None, quiet: bool = False
):
    """Start a local Ray (unless one is up), then the profile's graph on host:port."""
    import ray
    from ray import serve

    from serve_app.app.builder import build_graph
    from serve_app.tools.profiles import load_profile

    profile = load_profile(profile_path)
    if not ray.is_initialized():
        apply_serve_env()  # read by the processes this Ray starts
        # quiet: replica logs stay in Ray's log directory instead of the console
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=not quiet)
    serve.start(http_options={"host": host, "port": port})
    app = build_graph(profile.args, profile.overrides)
    serve.run(app, name=profile.app_name, route_prefix=profile.route_prefix,
              logging_config=profile.logging_config)
    return profile


class _DemoAuth:
    def __init__(self, banner: str, header: str = "", key: str = ""):
        self.banner, self.header, self.key = banner, header, key


def _demo_auth(app_args) -> _DemoAuth:
    """Say whether the demo runs open; with keys on, make the tenant `demo` and a key."""
    from serve_app.app.settings import apply_environment
    from serve_app.platform.errors import NotFound
    from serve_app.platform.service import Platform

    settings = apply_environment(app_args).platform
    if not settings.auth_enabled:
        return _DemoAuth("\n  AUTHENTICATION IS OFF (--open / AUTH_ENABLED=false): the demo runs OPEN, every "
                         "request acts as tenant 'public'.\n")
    platform = Platform.open(settings)
    try:
        try:
            platform.tenants.get("demo")
        except NotFound:
            platform.tenants.create("demo")
        key = platform.keys.create("demo", name="qtts demo").secret
    finally:
        platform.close()
    return _DemoAuth(
        f"\n  Authentication is ON. An API key of tenant 'demo' (shown once): {key}\n"
        f"  (`{qtts_command()} demo --open` runs it without keys; `{qtts_command()} admin` manages "
        "tenants and keys.)\n",
        f"-H 'Authorization: Bearer {key}' ", key)


class PortInUse(Exception):
    """The demo's port is taken: say so, and by which process when it can be told."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUse when something listens on host:port. Serve's proxy binds with
    SO_REUSEPORT, so a second demo would share the port with the first (requests alternating
    between two clusters) instead of failing: binding here without that flag is refused by
    the kernel while any socket listens there, which is the check."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            holder = port_holder(port)
            by = f" by {holder}" if holder else ""
            raise PortInUse(
                f"Port {port} on {host} is already in use{by}. Stop that process (is another "
                f"`qtts demo` running?) or pass another port, e.g. --port {port + 1}.") from None


def port_holder(port: int) -> str | None:
    """`pid N (command line)` of a process listening on `port` (Linux /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                return f"pid {pid} ({command.decode(errors='replace').strip()[:120]})"
        except OSError:
            continue
    return None


def qtts_command() -> str:
    """How to call `qtts` from the user's shell: `qtts` when it is on PATH (an activated
    venv), else the path of this venv's script."""
    mine = Path(sys.executable).parent / "qtts"
    found = shutil.which("qtts")
    if found and Path(found).resolve() == mine.resolve():
        return "qtts"
    try:
        return str(mine.relative_to(Path.cwd()))
    except ValueError:
        return str(mine)


def wyoming_banner(app_args) -> str:
    """The Wyoming line of the banner (empty when the server is off): its address, the
    tenant it acts as and the networks it answers (serve_app.wyoming, docs/clients.md)."""
    from serve_app.app.settings import apply_environment

    settings = apply_environment(app_args)
    wyoming = settings.wyoming
    if not wyoming.enabled:
        return ""
    trusted = ", ".join(str(n) for n in settings.platform.trusted_networks) or "none (set TRUSTED_NETWORKS)"
    return (f"\n  Wyoming (Home Assistant): {wyoming.address()}  acting as tenant "
            f"'{wyoming.tenant}', answering peers in {trusted}\n")


def demo_banner(base: str, ready_s: float, auth: _DemoAuth, logs: str, ray_address: str,
                ray_auth: str, wyoming: str = "") -> str:
    """What `qtts demo` prints once it serves: every link works in a browser without a key,
    and every command runs as printed (a key only where the demo made one)."""
    qtts = qtts_command()
    key_env = f" QTTS_KEY={auth.key}" if auth.key else ""
    return f"""
qtts demo is serving on {base}  (ready in {ready_s:.1f} s)
  These checkpoints have random weights: the audio is noise of a realistic shape, not speech.
{auth.banner}{wyoming}
  curl -s -X POST {base}/api/tts/synthesize -H 'Content-Type: application/json' {auth.header}\\
       -d '{{"text": "{DEMO_TEXT}", "language": "zh", "speaker": "Vivian"}}'
  curl -s -X POST {base}/v1/audio/speech -H 'Content-Type: application/json' {auth.header}\\
       -d '{{"model": "tts-1", "input": "Hello!", "voice": "alloy", "response_format": "mp3"}}' -o hello.mp3
  In a browser: {base}/  (playground: {base}/playground  API docs: {base}/docs)
  From a shell: QTTS_URL={base}{key_env} {qtts} say "Hello!" -o hello.mp3
  health: {base}/api/health     voices: {base}/v1/audio/voices
  Replica logs: {logs}
  Ray handle API (docs/api.md) from another process: RAY_ADDRESS={ray_address} RAY_AUTH_MODE={ray_auth} python ...

Press Ctrl+C to stop."""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _demo_environment(args: argparse.Namespace) -> None:
    _quiet_environment()
    apply_serve_env()  # before the demo's ray.init
    if args.open:
        os.environ["AUTH_ENABLED"] = "false"  # read by the settings, here and in the replicas
    if args.wyoming:
        os.environ["WYOMING_ENABLED"] = "true"
        os.environ.setdefault("WYOMING_HOST", args.host)
        # Wyoming answers only trusted networks: the demo's own machine unless told otherwise
        # (this also lets key-less seed calls from it act as TRUSTED_NETWORK_TENANT)
        os.environ.setdefault("TRUSTED_NETWORKS", "127.0.0.0/8,::1/128")


def _demo(args: argparse.Namespace) -> int:
    try:
        check_port_free(args.host, args.port)
        if args.wyoming:
            check_port_free(os.environ.get("WYOMING_HOST") or args.host,
                            int(os.environ.get("WYOMING_PORT") or 10200))
    except PortInUse as exc:
        print(f"qtts demo: {exc}", file=sys.stderr)
        return 1
    _demo_environment(args)
    import ray

    from deployments.checkpoints import ensure_tiny_checkpoints

    started = time.perf_counter()
    print("qtts demo: preparing tiny random-weight checkpoints (first run builds them) ...", flush=True)
    paths = ensure_tiny_checkpoints()
    from deployments.aligner.tiny import ensure_tiny_aligner

    ensure_tiny_aligner()  # the profile's ForcedAligner (word timestamps)
    print(f"  checkpoints ready under {next(iter(paths.values())).parent}", flush=True)
    print("qtts demo: starting Ray and the serve graph ...", flush=True)
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which installs its own
    logs = _serve_log_dir()
    ray_address = ray.get_runtime_context().gcs_address
    ray_auth = os.environ.get("RAY_AUTH_MODE", "disabled")  # ray.init sets it when it made a token
    try:
        profile = start_graph(Path(args.profile), args.host, args.port, quiet=True)
        base = f"http://{args.host}:{args.port}"
        auth = _demo_auth(profile.args)
        print(demo_banner(base, time.perf_counter() - started, auth, logs, ray_address, ray_auth,
                          wyoming_banner(profile.args)), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nqtts demo: shutting down ...", flush=True)
    finally:
        stopping = time.perf_counter()
        # ray.shutdown() stops the local cluster this process started, replicas included
        # (~1-2 s); serve.shutdown() first would drain each replica gracefully, ~5-10 s more
        # on 2 cores, and wait on replicas that a Ctrl+C in the terminal has already killed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut it short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ray.shutdown()
        print(f"qtts demo: stopped in {time.perf_counter() - stopping:.1f} s", flush=True)
    # Stopped by the user and Ray is down: skip the interpreter's teardown of torch, Ray and
    # the rest (seconds on a busy 2-core box, measured 2-4 s); nothing is left to flush.
    sys.stderr.flush()
    os._exit(0)


def _serve_log_dir() -> str:
    try:
        from ray._private.worker import global_worker

        return str(Path(global_worker.node.get_session_dir_path()) / "logs" / "serve")
    except Exception:  # noqa: BLE001 - only a hint in the banner
        return "/tmp/ray/session_latest/logs/serve/"


def _make_tiny(args: argparse.Namespace) -> int:
    _quiet_environment()
    from deployments.engine import build_tiny_models

    started = time.perf_counter()
    paths = build_tiny_models(args.dir, seed=args.seed)
    for kind, path in paths.items():
        print(f"{kind.value:>13}: {path}")
    from deployments.aligner.tiny import ensure_tiny_aligner

    print(f"{'aligner':>13}: {ensure_tiny_aligner(args.dir, seed=args.seed)}")
    print(f"built in {time.perf_counter() - started:.1f} s")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from serve_app.tools.profiles import ConfigError, validate_config

    failed = 0
    for path in args.files:
        try:
            validate_config(yaml.safe_load(Path(path).read_text()), path)
            print(f"{path}: ok")
        except (ConfigError, ValueError) as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _cluster_manifest(args: argparse.Namespace) -> int:
    from serve_app.tools.cluster_manifest import ManifestError, render_file

    try:
        text = render_file(args.values, image=args.image)
    except (ManifestError, ValueError) as exc:
        print(f"{args.values}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != text:
            print(f"{args.output} is stale: run qtts cluster-manifest {args.values} "
                  f"-o {args.output}", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
    elif args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qtts", description="Qwen3-TTS Serve")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="serve the whole graph on CPU with tiny checkpoints")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--profile", default=str(DEFAULT_PROFILE), help="a serve config to run")
    demo.add_argument("--open", action="store_true",
                      help="no API keys: every request acts as tenant 'public' (as AUTH_ENABLED=false)")
    demo.add_argument("--wyoming", action="store_true",
                      help="also serve Home Assistant's Wyoming protocol (WYOMING_PORT, default "
                      "10200), trusting this machine (TRUSTED_NETWORKS, unless set)")
    demo.set_defaults(func=_demo)
    tiny = sub.add_parser("make-tiny-models", help="build tiny random-weight checkpoints in DIR")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny)
    check = sub.add_parser("check-config", help="validate serve configs strictly")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_check_config)
    manifest = sub.add_parser("cluster-manifest",
                              help="render the KubeRay RayService for a cluster values file")
    manifest.add_argument("values", help="e.g. cluster/values/large.yaml")
    manifest.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    manifest.add_argument("--image", help="container image (overrides the values file)")
    manifest.add_argument("--check", action="store_true",
                          help="exit 1 when --output differs from what would be written")
    manifest.set_defaults(func=_cluster_manifest)
    from serve_app.platform.admin_cli import add_admin_parser

    add_admin_parser(sub)  # qtts admin ...: tenants, keys, usage, migrations
    from serve_app.tools.say_cli import add_say_parser

    add_say_parser(sub)  # qtts say "text": speak through a running server (serve_app/tools/say_cli.py)
    return parser


if __name__ == "__main__":
    sys.exit(main())
