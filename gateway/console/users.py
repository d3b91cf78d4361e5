"""The console's users file: names, roles (``viewer`` | ``admin``) and argon2id password hashes, in YAML.

```yaml
users:
  alice: {role: admin, password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."}
  bob: {role: viewer, password_hash: "$argon2id$..."}
```

``vera-gateway console add-user NAME --role admin`` writes entries (password from a prompt or stdin). The
file is re-read when it changes, so removing a user or changing a role applies to open sessions at their
next request.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.ops.admin import Role

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
HASHER = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
# verified against when the name is unknown, so a wrong name costs the same time as a wrong password
_DUMMY_HASH = HASHER.hash("not a password of anyone")


class UsersFileError(ValueError):
    """The users file cannot be read; the message names the file and the entry."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str


def read_users(path: Path) -> dict[str, User]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: {exc}") from exc
    users: dict[str, User] = {}
    for name, entry in (data.get("users") or {}).items():
        if not NAME.match(str(name)) or not isinstance(entry, dict):
            raise UsersFileError(f"{path}: user {name!r}: a name of letters, digits, ._@- and a mapping")
        try:
            role = Role(entry.get("role", "viewer"))
        except ValueError as exc:
            raise UsersFileError(f"{path}: user {name}: role must be viewer or admin") from exc
        users[str(name)] = User(str(name), role, str(entry.get("password_hash", "")))
    return users


def write_user(path: Path, name: str, role: Role, password: str, hasher: PasswordHasher = HASHER) -> None:
    """Add or replace one user (0600 file, atomic rename); ``hasher``: cheaper parameters in tests only."""
    if not NAME.match(name):
        raise UsersFileError(f"user name {name!r}: letters, digits and ._@- only")
    data: dict[str, Any] = {"users": {}}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"users": {}}
        data.setdefault("users", {})
    data["users"][name] = {"role": role.value, "password_hash": hasher.hash(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class UserStore:
    """Reads the users file again when its mtime or size changes; verifies passwords in constant-ish time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (-1, -1)
        with self._lock:
            if stamp != self._stamp:
                self._users = read_users(self.path)
                self._stamp = stamp
            return self._users

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def verify(self, name: str, password: str) -> User | None:
        user = self.get(name)
        try:
            HASHER.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


# ---- CLI: vera-gateway console add-user --------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    console = subparsers.add_parser("console", help="web console users (console add-user NAME --role ROLE)")
    sub = console.add_subparsers(dest="console_command", required=True)
    add = sub.add_parser("add-user", help="add or replace a console user (argon2id hash in the users file)")
    add.add_argument("name")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.VIEWER.value)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--users-file", type=Path, help="default: the config's console.users_file")
    add.add_argument("--config", type=Path, default=argparse.SUPPRESS)  # also after the sub-command
    add.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    console.set_defaults(func=cmd_console)
    return console


def cmd_console(args: argparse.Namespace) -> int:
    from gateway.core.config import load_config

    path = args.users_file
    if path is None:
        config = load_config(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))
        users_file = config.console.users_file if config.console else Path("console-users.yaml")
        path = config.resolve(users_file)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 1
    try:
        write_user(path, args.name, Role(args.role), password)
    except UsersFileError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.name} ({args.role}) written to {path}")
    return 0
