"""``vera-gateway``: serve, echo, the admin commands (gateway/cli/admin.py), other modules' command groups.

Adding a command group: write a module with ``add_parser(subparsers) -> ArgumentParser`` that registers its
sub-command and sets ``func(args) -> int`` as the parser default, then map each of its commands to its
dotted name and one-line help in ``COMMAND_MODULES`` (the module is imported only when its command runs).
The global ``--config`` and ``--data-dir`` options are on ``args``. A listed module that does not exist yet
is skipped; any other import error is raised.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.cli import admin as admin_commands

# command → module exposing ``add_parser(subparsers)`` that registers it, and the command's one-line help.
# A module is imported only when one of its commands runs (the face pipeline pulls in torch, cv2 and dlib,
# seconds of imports that `--help`, `status` or `rules check` must not pay); `--help` lists the lines here.
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "rules": ("dicom_rules.cli", "check, explain and describe rule files"),
    "doctor": ("gateway.ops.doctor", "check this installation; exit 1 on any problem"),
    "donors": ("gateway.cli.offline", "build the surrogate engine's donor bank"),
    "anonymize": ("gateway.cli.offline", "anonymize DICOM files offline"),
    "import-photos": ("gateway.cli.offline", "photos → VL Photographic DICOM"),
    "console": ("gateway.console.users", "web console: add-user (users file with argon2 hashes)"),
    "vera": ("anonymizer.engines.vera.cli", "VerA neural engine: train, parser-train, invert, ..."),
    "worker": ("gateway.cluster.cli", "cluster: run study jobs from the queue (one process per GPU)"),
    "db": ("gateway.cluster.cli", "cluster: PostgreSQL ledger schema (upgrade, status)"),
}
GLOBAL_OPTIONS_WITH_VALUE = ("--config", "--data-dir")
ALL_COMMANDS = "*"


def _config(args: argparse.Namespace, **overrides: Any) -> Any:
    from gateway.core.config import load_config

    return load_config(args.config, data_dir=args.data_dir, **overrides)


def serve_config(args: argparse.Namespace) -> Any:
    """The config file with serve's flags on top. ``--rules`` is a path typed on the command line: it is
    relative to the working directory (like every other command's), not to the data dir as in the file."""
    return _config(
        args,
        port=args.port,
        bind=args.bind,
        ae_title=args.ae_title,
        rules_file=args.rules.absolute() if args.rules is not None else None,
        metrics_port=args.metrics_port,
        workers=args.workers,
        quiet_period_s=args.quiet_period,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.core.service import Service
    from gateway.ops.logs import configure_logging

    configure_logging(args.log_level)
    config = serve_config(args)
    if config.clustered:
        from gateway.cluster.cli import serve

        return serve(args, config)
    if args.role not in (None, "all"):
        print("vera-gateway: --role needs a cluster config (ledger: postgresql://...)", file=sys.stderr)
        return 2
    service = Service(config)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    done.wait()
    service.stop()
    return 0


def resolve_destination(name: str, config: Any) -> Any:
    """A destination name from the rules, ``AE@host:port`` for an ad-hoc DICOM peer, or a DICOMweb URL."""
    from dicom_rules import DicomDestination, DicomWebDestination
    from gateway.core.config import load_rule_set

    if name.startswith(("http://", "https://")):
        return DicomWebDestination(name=name, url=name.rstrip("/"))

    if "@" in name:
        ae_title, _, address = name.partition("@")
        host, _, port = address.rpartition(":")
        return DicomDestination(name=name, ae_title=ae_title, host=host, port=int(port))
    destinations = load_rule_set(config).destinations
    if name not in destinations:
        raise LookupError(f"unknown destination {name!r}; known: {', '.join(sorted(destinations)) or 'none'}")
    return destinations[name]


def _probe(destination: Any, config: Any) -> tuple[bool, str]:
    from dicom_rules import DicomDestination

    if isinstance(destination, DicomDestination):  # bare-socket C-ECHO: no pynetdicom/pydicom import
        from gateway.core import verification

        return verification.probe(verification.echo_peer(destination, config))
    from gateway.core.destinations import sender_for

    sender = sender_for(destination, config)
    return sender.probe() if hasattr(sender, "probe") else (sender.echo(), "")


def cmd_echo(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        destination = resolve_destination(args.destination, config)
    except (LookupError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    started = time.perf_counter()
    ok, detail = _probe(destination, config)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"{args.destination}: {'OK' if ok else 'FAILED'} ({detail or f'{elapsed:.0f} ms'})")
    return 0 if ok else 1


def build_parser(command: str | None = ALL_COMMANDS) -> argparse.ArgumentParser:
    """The parser with every command; given ``command``, only the module owning it (COMMAND_MODULES) is
    imported and the other module commands are listed by name and help only."""
    parser = argparse.ArgumentParser(prog="vera-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="service config YAML (optional)")
    parser.add_argument("--data-dir", type=Path, default=None, help="spool/ledger/outbox root (default var/)")
    # also accepted after the sub-command (``serve --data-dir var``); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", parents=[common], help="run the gateway (SCP, pipeline, forwarder, metrics)"
    )
    serve.add_argument("--port", type=int)
    serve.add_argument("--bind")
    serve.add_argument("--ae-title")
    serve.add_argument("--rules", type=Path, help="rule file (default: the shipped default rules)")
    serve.add_argument("--metrics-port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--quiet-period", type=float)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--role",
        choices=("receive", "work", "forward", "all"),
        help="cluster mode: what this node does (default all; needs a postgresql:// ledger)",
    )
    serve.set_defaults(func=cmd_serve)
    admin_commands.add_parser(sub, common)  # status, studies, quarantine, audit
    echo = sub.add_parser(
        "echo",
        parents=[common],
        help="C-ECHO or QIDO-RS a destination (rule-file name, AE@host:port or a DICOMweb URL)",
    )
    echo.add_argument("destination")
    echo.set_defaults(func=cmd_echo)
    modules = {m for m, _ in COMMAND_MODULES.values()}
    wanted = modules if command == ALL_COMMANDS else {COMMAND_MODULES.get(command or "", ("", ""))[0]} - {""}
    for module_name in sorted(wanted):
        _register(module_name, sub)
    for name, (_, help_text) in COMMAND_MODULES.items():
        if name not in sub.choices:  # listed for --help; its module loads when the command is used
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is neither an option nor an option's value)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _register(module_name: str, subparsers: Any) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return  # not written yet
        raise
    module.add_parser(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # No pydantic plugins are used; without this, the first model built scans every installed distribution's
    # entry points (~150 in the venv, beside torch), start-up time that `rules check|explain` must not pay.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = build_parser(command_word(argv)).parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"vera-gateway: {exc}", file=sys.stderr)  # RulesError: one file:line:col line per error
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors a user fixes in a file; imported after the fact so a command loads only what it uses."""
    from anonymizer.keys import SecretError
    from gateway.core.config import ConfigError

    errors: list[type[Exception]] = [ConfigError, SecretError]
    if "dicom_rules" in sys.modules:  # only a command that loaded rules can raise their errors
        from dicom_rules import RulesError

        errors.append(RulesError)
    if "gateway.core.destinations.webauth" in sys.modules:  # a token file the STOW receiver cannot read
        from gateway.core.destinations.webauth import SecretError as WebSecretError

        errors.append(WebSecretError)
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
