"""The playbook format: Markdown with YAML front matter, validated with pydantic.

A playbook is ``vetted`` only when at least one reviewer is not among its authors; only
vetted playbooks are ever retrieved as candidates. Errors name the file, the field and
what is wrong, so an author can fix a playbook without reading this code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REQUIRED_SECTIONS = ("symptoms", "diagnosis", "steps", "rollback")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


class Status(StrEnum):
    DRAFT = "draft"
    VETTED = "vetted"
    DEPRECATED = "deprecated"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AppliesTo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    components: list[str] = Field(default_factory=list)
    fault_types: list[str] = Field(default_factory=list)


class PlaybookMeta(BaseModel):
    """The front matter. Unknown fields are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str
    title: str = Field(min_length=3)
    action: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    parameters: dict[str, Any] = Field(default_factory=dict)
    preconditions: list[str] = Field(default_factory=list)
    risk: Risk
    blast_radius: int = Field(ge=0)
    status: Status
    authors: list[str] = Field(min_length=1)
    reviewers: list[str] = Field(default_factory=list)
    reviewed_at: dt.date | None = None
    version: int | str = 1
    source: str | None = None
    license: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "must be 2-80 characters of lowercase letters, digits, '.', '_' or '-'"
            )
        return value

    @model_validator(mode="after")
    def _vetting(self) -> PlaybookMeta:
        if self.status is Status.VETTED:
            independent = set(self.reviewers) - set(self.authors)
            if not independent:
                raise ValueError(
                    "reviewers: a vetted playbook needs at least one reviewer who is not an author"
                )
            if self.reviewed_at is None:
                raise ValueError("reviewed_at: a vetted playbook needs the date of its review")
        return self


class PlaybookError(ValueError):
    """One problem in one playbook file."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        self.path, self.field, self.message = str(path), field, message
        super().__init__(f"{path}: {field}: {message}")


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class Playbook:
    meta: PlaybookMeta
    body: str
    path: str
    content_hash: str

    @property
    def id(self) -> str:
        return self.meta.id

    def sections(self) -> list[Section]:
        return split_sections(self.body)

    def section(self, name: str) -> str:
        for s in self.sections():
            if s.heading.lower() == name:
                return s.text
        return ""


def split_sections(body: str) -> list[Section]:
    """Split Markdown at its headings; text before the first heading is a section too."""
    matches = list(_HEADING.finditer(body))
    sections: list[Section] = []
    head = body[: matches[0].start()] if matches else body
    if head.strip():
        sections.append(Section("", head.strip()))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        sections.append(Section(m.group(2).strip(), body[m.end() : end].strip()))
    return sections


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field_of(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()))
    if loc:
        return loc
    msg = str(error.get("msg", ""))
    # model-level errors carry their field at the start of the message ("reviewers: ...")
    inner = msg.removeprefix("Value error, ")
    return inner.split(":", 1)[0] if ":" in inner else "front matter"


def parse_playbook(text: str, path: Path | str) -> Playbook:
    """Parse one file's text; raises ``PlaybookError`` naming the first problem."""
    match = _FRONT_MATTER.match(text)
    if not match:
        raise PlaybookError(path, "front matter", "missing: start the file with a '---' YAML block")
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}" if mark is not None else "front matter"
        raise PlaybookError(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise PlaybookError(path, "front matter", "must be a YAML mapping of fields")
    try:
        meta = PlaybookMeta.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        field = _field_of(dict(first))
        msg = msg.split(": ", 1)[1] if msg.startswith(f"{field}: ") else msg
        raise PlaybookError(path, field, msg) from exc
    body = text[match.end() :]
    playbook = Playbook(meta, body, str(path), content_hash(text))
    if meta.status is Status.VETTED:
        present = {s.heading.lower() for s in playbook.sections()}
        missing = [s for s in REQUIRED_SECTIONS if s not in present]
        if missing:
            raise PlaybookError(
                path, "body", f"missing section(s): {', '.join('## ' + m.title() for m in missing)}"
            )
    return playbook


def load_playbook(path: Path) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PlaybookError(path, "file", f"not UTF-8 text ({exc.reason})") from exc
    return parse_playbook(text, path)


@dataclass(frozen=True, slots=True)
class LintReport:
    playbooks: list[Playbook]
    errors: list[PlaybookError]

    @property
    def ok(self) -> bool:
        return not self.errors


def lint_folder(directory: Path) -> LintReport:
    """Validate every ``*.md`` under ``directory`` (``policies/`` and README files aside)."""
    if not directory.is_dir():
        return LintReport([], [PlaybookError(directory, "folder", "not found")])
    playbooks: list[Playbook] = []
    errors: list[PlaybookError] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.rglob("*.md")):
        if path.name.lower() == "readme.md" or path.name.startswith("."):
            continue  # READMEs and files being written (hidden temporaries)
        try:
            pb = load_playbook(path)
        except PlaybookError as exc:
            errors.append(exc)
            continue
        if pb.id in seen:
            errors.append(PlaybookError(path, "id", f"{pb.id!r} is already used by {seen[pb.id]}"))
            continue
        seen[pb.id] = str(path)
        playbooks.append(pb)
    return LintReport(playbooks, errors)
