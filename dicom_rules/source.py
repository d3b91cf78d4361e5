"""Reading rule files: YAML (plus includes) into plain data, with a file:line:column for every node.

The YAML is composed into a node tree first, so each mapping key, value and sequence item keeps its start
mark. Paths into the data (``("routes", 0, "to")``) map back to those marks; validation errors from pydantic
and from the cross-reference checks are reported against them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 200_000
KEY = "[key]"  # pydantic's loc marker for a dict key; also ours for "the key node of this entry"
MERGED_SECTIONS = ("sources", "destinations", "routes")

PathT = tuple[str | int, ...]


@dataclass(frozen=True)
class Loc:
    file: Path
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class RuleError:
    """One problem in a rule file, at a place an editor can jump to."""

    loc: Loc
    message: str
    hint: str = ""
    severity: str = "error"  # or "warning": reported by `rules check`, does not block loading

    def __str__(self) -> str:
        text = f"{self.loc}: {self.severity}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class RulesError(ValueError):
    """A rule file (or one of its includes) is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = sorted(errors, key=lambda e: (str(e.loc.file), e.loc.line, e.loc.column))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass
class SourceDoc:
    """Merged data of a rule file and its includes, with a mark for every path."""

    data: dict[str, Any]
    marks: dict[PathT, Loc] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """The rule-set version: see :func:`combined_sha256`."""
        return combined_sha256(self.digests)

    def loc(self, path: PathT, *, at_key: bool = False) -> Loc:
        """Best mark for a (pydantic) loc: walk as deep as the tree knows, skipping union tags."""
        here: PathT = ()
        for elem in path:
            if elem == KEY:
                at_key = True
                break
            if (*here, elem) in self.marks:
                here = (*here, elem)
        if at_key and (*here, KEY) in self.marks:
            return self.marks[(*here, KEY)]
        return self.marks.get(here) or self.marks[()]


def combined_sha256(digests: list[str]) -> str:
    """One file: its sha256 (as ``sha256sum`` prints). With includes: sha256 of the digests in load order."""
    if len(digests) == 1:
        return digests[0]
    h = hashlib.sha256()
    for digest in digests:
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def _mark(file: Path, node: yaml.Node) -> Loc:
    return Loc(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Constructs plain Python data from a node tree while recording marks and duplicate keys."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.marks: dict[PathT, Loc] = {}
        self.errors: list[RuleError] = []
        self._scalars = yaml.SafeLoader("")
        self._stack: set[int] = set()
        self._count = 0

    def build(self, node: yaml.Node, path: PathT) -> Any:
        self.marks[path] = _mark(self.file, node)
        self._count += 1
        if id(node) in self._stack or len(self._stack) > MAX_DEPTH or self._count > MAX_NODES:
            raise yaml.MarkedYAMLError(
                problem="recursive, too deep or too large (aliases?)", problem_mark=node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            self._stack.add(id(node))
            out = self._mapping(node, path)
            self._stack.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            self._stack.add(id(node))
            items = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            self._stack.discard(id(node))
            return items
        return self._scalars.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: PathT) -> dict[Any, Any]:
        self._scalars.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(RuleError(_mark(self.file, key_node), "a key must be a plain value"))
                continue
            key = self._scalars.construct_object(key_node, deep=True)
            if key in out:
                first = self.marks[(*path, key, KEY)].line
                self.errors.append(
                    RuleError(
                        _mark(self.file, key_node),
                        f"duplicate key {key!r}",
                        f"first given at line {first}; keep one of them",
                    )
                )
                continue
            self.marks[(*path, key, KEY)] = _mark(self.file, key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


def read_yaml(file: Path) -> tuple[Any, dict[PathT, Loc], list[RuleError], str]:
    """One file → (data, marks, errors, sha256). Syntax errors come back as RuleErrors, never raised."""
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        return None, {}, [RuleError(Loc(file, 1, 1), f"not UTF-8 text ({exc.reason})")], digest
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        return (
            None,
            {},
            [RuleError(loc, f"YAML syntax: {exc.problem}", "check indentation and quoting")],
            digest,
        )
    if node is None:
        return {}, {(): Loc(file, 1, 1)}, [], digest
    builder = _Builder(file)
    try:
        data = builder.build(node, ())
    except (yaml.MarkedYAMLError, ValueError, TypeError) as exc:  # bad merge key, impossible date, …
        mark = getattr(exc, "problem_mark", None) or node.start_mark
        problem = getattr(exc, "problem", None) or str(exc)
        return (
            None,
            {},
            [
                RuleError(
                    Loc(file, mark.line + 1, mark.column + 1),
                    f"YAML syntax: {problem}",
                    "check the value at this place",
                )
            ],
            digest,
        )
    return data, builder.marks, builder.errors, digest


def load_source(path: Path) -> SourceDoc:
    """Read a rule file and its includes (depth first, each file once) into one merged document."""
    doc = SourceDoc(data={})
    _load_into(doc, path.resolve(), stack=())
    doc.marks.setdefault((), Loc(path, 1, 1))
    return doc


def _load_into(doc: SourceDoc, file: Path, stack: tuple[Path, ...]) -> None:
    data, marks, errors, digest = read_yaml(file)
    doc.files.append(file)
    doc.digests.append(digest)
    doc.errors.extend(errors)
    if data is None:
        return
    if not isinstance(data, dict):
        doc.errors.append(
            RuleError(marks[()], "a rule file must be a mapping (sources, destinations, routes …)")
        )
        return
    for i, name in enumerate(_as_list(data.get("include"))):
        target = (file.parent / str(name)).resolve()
        where = marks.get(("include", i)) or marks[()]
        if target in stack or target == file:
            doc.errors.append(
                RuleError(where, f"include cycle through {name}", "remove the circular include")
            )
        elif not target.is_file():
            doc.errors.append(
                RuleError(where, f"included file {name} not found", f"paths are relative to {file.parent}")
            )
        elif target not in doc.files:
            _load_into(doc, target, (*stack, file))
    _merge(doc, data, marks, is_root=not stack)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _merge(doc: SourceDoc, data: dict[str, Any], marks: dict[PathT, Loc], *, is_root: bool) -> None:
    """Append this file's sections after those of its includes; root-only keys come from the root file."""
    for key, value in data.items():
        if not is_root and key not in (*MERGED_SECTIONS, "include"):
            doc.errors.append(
                RuleError(
                    marks[(key, KEY)],
                    f"'{key}' is not allowed in an included file",
                    "included files may hold only sources, destinations, routes, include",
                )
            )
        elif key in MERGED_SECTIONS and key in doc.data:
            _merge_section(doc, key, value, marks)
        elif key in MERGED_SECTIONS or is_root:
            doc.data[key] = value
            doc.marks.update({p: m for p, m in marks.items() if p[:1] == (key,)})
    if is_root:
        doc.marks[()] = marks[()]


def _merge_section(doc: SourceDoc, key: str, value: Any, marks: dict[PathT, Loc]) -> None:
    have = doc.data[key]
    if isinstance(have, list) and isinstance(value, list):
        offset = len(have)
        have.extend(value)
        for p, m in marks.items():
            if p[:1] == (key,) and len(p) > 1 and isinstance(p[1], int):
                doc.marks[(key, p[1] + offset, *p[2:])] = m
    elif isinstance(have, dict) and isinstance(value, dict):
        for name, item in value.items():
            if name in have:
                doc.errors.append(
                    RuleError(
                        marks[(key, name, KEY)],
                        f"{key[:-1]} {name!r} is defined twice",
                        f"first defined at {doc.marks[(key, name, KEY)]}",
                    )
                )
                continue
            have[name] = item
            doc.marks.update({p: m for p, m in marks.items() if p[:2] == (key, name)})
    else:
        doc.errors.append(RuleError(marks[(key,)], f"'{key}' has a different shape than in an included file"))
