"""Pronunciation dictionaries, per tenant: stored, versioned, limited.

A dictionary is one row: its entries (each a grapheme, literal text, read as an alias, with
its case and word-boundary rules), a version that counts its changes (1 when created, one
more on every change of its entries), and its place among the tenant's default dictionaries.
Every read and write is scoped by tenant, in the application's filter and in PostgreSQL's
row-level security (serve_app.platform.isolation): another tenant's dictionary is "not
found", exactly as an absent one.

The limits (`PronunciationArgs`) are checked here, each refusal naming its field:
`entries[3].alias`, `entries`, `name`, `dictionary_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select

from serve_app.platform.config import PronunciationArgs
from serve_app.platform.db import Database
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.models import PronunciationDictionaryRow, new_id, utcnow

DICTIONARY_ID_PREFIX = "pdict"
#: The most default dictionaries a tenant has (as many as a request may name).
MAX_DEFAULTS = 3


@dataclass(frozen=True)
class EntryData:
    grapheme: str
    alias: str
    case_sensitive: bool = False
    word_boundaries: bool = True

    @property
    def key(self) -> str:
        """What two entries of one dictionary may not share."""
        return self.grapheme if self.case_sensitive else self.grapheme.casefold()

    def as_dict(self) -> dict[str, Any]:
        return {"grapheme": self.grapheme, "alias": self.alias,
                "case_sensitive": self.case_sensitive, "word_boundaries": self.word_boundaries}


@dataclass(frozen=True)
class DictionaryInfo:
    id: str
    name: str
    description: str | None
    language: str | None
    version: int
    entries: tuple[EntryData, ...]
    default_rank: int | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self, entries: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "object": "pronunciation_dictionary", "name": self.name,
            "description": self.description, "language": self.language,
            "version": self.version, "entry_count": len(self.entries),
            "default": self.default_rank is not None,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}
        if entries:
            out["entries"] = [e.as_dict() for e in self.entries]
        return out


def _info(row: PronunciationDictionaryRow) -> DictionaryInfo:
    return DictionaryInfo(row.id, row.name, row.description, row.language, row.version,
                          tuple(EntryData(**e) for e in row.entries), row.default_rank,
                          row.created_at, row.updated_at)


def is_dictionary_id(value: str) -> bool:
    return value.startswith(DICTIONARY_ID_PREFIX + "_")


#: The tenant's default dictionaries' (id, version), in order: read on every request, so
#: built once and run with the tenant bound.
_DEFAULT_VERSIONS = (select(PronunciationDictionaryRow.id, PronunciationDictionaryRow.version)
                     .where(PronunciationDictionaryRow.tenant_id == bindparam("tenant"),
                            PronunciationDictionaryRow.default_rank.is_not(None))
                     .order_by(PronunciationDictionaryRow.default_rank))


class PronunciationDictionaries:
    def __init__(self, db: Database, limits: PronunciationArgs):
        self._db = db
        self.limits = limits

    # ----------------------------------------------------------------------- checking
    def check_entries(self, entries: list[EntryData], param: str = "entries",
                      start: int = 0) -> list[EntryData]:
        """`entries` within the limits, each grapheme once (422 naming the entry)."""
        limits = self.limits
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries, start):
            at = f"{param}[{i}]"
            if not entry.grapheme.strip():
                raise InvalidRequest(f"{at}.grapheme is blank; a grapheme is a word or phrase",
                                     param=f"{at}.grapheme")
            if len(entry.grapheme) > limits.max_grapheme_chars:
                raise InvalidRequest(
                    f"{at}.grapheme is {len(entry.grapheme)} characters long; at most "
                    f"{limits.max_grapheme_chars} are allowed", param=f"{at}.grapheme")
            if not entry.alias.strip():
                raise InvalidRequest(f"{at}.alias is blank; an alias is the text the model "
                                     "reads instead", param=f"{at}.alias")
            if len(entry.alias) > limits.max_alias_chars:
                raise InvalidRequest(
                    f"{at}.alias is {len(entry.alias)} characters long; at most "
                    f"{limits.max_alias_chars} are allowed", param=f"{at}.alias")
            if entry.key in seen:
                raise InvalidRequest(
                    f"{at}.grapheme {entry.grapheme!r} is already {param}[{seen[entry.key]}]; "
                    "each grapheme once per dictionary", param=f"{at}.grapheme")
            seen[entry.key] = i
        if len(entries) > limits.max_entries:
            raise InvalidRequest(f"{param} has {len(entries)} entries; a dictionary holds at "
                                 f"most {limits.max_entries}", param=param)
        return entries

    # --------------------------------------------------------------------------- write
    def create(self, tenant_id: str, name: str, entries: list[EntryData], *,
               description: str | None = None, language: str | None = None) -> DictionaryInfo:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a dictionary name has 1 to 100 characters", param="name")
        self.check_entries(entries)
        now = utcnow()
        row = PronunciationDictionaryRow(
            id=new_id(DICTIONARY_ID_PREFIX), tenant_id=tenant_id, name=name,
            description=description, language=language, version=1,
            entries=[e.as_dict() for e in entries], default_rank=None, created_at=now,
            updated_at=now)
        with self._db.transaction(tenant_id) as session:
            count = session.scalar(select(func.count()).select_from(PronunciationDictionaryRow)
                                   .where(PronunciationDictionaryRow.tenant_id == tenant_id))
            if count >= self.limits.max_dictionaries:
                raise Conflict(f"this tenant has {count} pronunciation dictionaries, the most "
                               "it may keep; delete one first", param="name",
                               code="dictionary_limit")
            session.add(row)
        return _info(row)

    def replace_entries(self, tenant_id: str, ref: str, entries: list[EntryData]
                        ) -> DictionaryInfo:
        self.check_entries(entries)
        return self._change(tenant_id, ref, lambda _: entries)

    def add_entries(self, tenant_id: str, ref: str, entries: list[EntryData]) -> DictionaryInfo:
        """`entries` added; one whose grapheme the dictionary has replaces that entry."""
        self.check_entries(entries)

        def merged(current: list[EntryData]) -> list[EntryData]:
            new = {e.key: e for e in entries}
            kept = [e for e in current if e.key not in new]
            total = kept + entries
            if len(total) > self.limits.max_entries:
                raise InvalidRequest(
                    f"entries would make {len(total)} entries; a dictionary holds at most "
                    f"{self.limits.max_entries}", param="entries")
            return total
        return self._change(tenant_id, ref, merged)

    def remove_entries(self, tenant_id: str, ref: str, graphemes: list[str]) -> DictionaryInfo:
        """The entries whose grapheme is one of `graphemes` removed (a case-insensitive
        entry by its grapheme in any case); graphemes it does not have are ignored."""
        exact = set(graphemes)
        folded = {g.casefold() for g in graphemes}

        def kept(current: list[EntryData]) -> list[EntryData]:
            return [e for e in current if not (
                e.grapheme in exact or not e.case_sensitive and e.grapheme.casefold() in folded)]
        return self._change(tenant_id, ref, kept)

    def _change(self, tenant_id: str, ref: str, change) -> DictionaryInfo:
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref, lock=True)
            current = [EntryData(**e) for e in row.entries]
            entries = change(current)
            if entries != current:
                row.entries = [e.as_dict() for e in entries]
                row.version += 1
                row.updated_at = utcnow()
            return _info(row)

    def delete(self, tenant_id: str, ref: str) -> DictionaryInfo:
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            info = _info(row)
            session.delete(row)
        return info

    def set_defaults(self, tenant_id: str, ids: list[str]) -> list[DictionaryInfo]:
        """The tenant's default dictionaries, in this order (404 for one it has not)."""
        if len(ids) > MAX_DEFAULTS:
            raise InvalidRequest(f"dictionary_ids names {len(ids)}; at most {MAX_DEFAULTS}",
                                 param="dictionary_ids")
        if len(set(ids)) != len(ids):
            raise InvalidRequest("dictionary_ids names a dictionary twice",
                                 param="dictionary_ids")
        with self._db.transaction(tenant_id) as session:
            rows = [self._row(session, tenant_id, i, param="dictionary_ids") for i in ids]
            for old in session.scalars(select(PronunciationDictionaryRow).where(
                    PronunciationDictionaryRow.tenant_id == tenant_id,
                    PronunciationDictionaryRow.default_rank.is_not(None))):
                old.default_rank = None
            session.flush()
            for rank, row in enumerate(rows):
                row.default_rank = rank
            return [_info(r) for r in rows]

    # ---------------------------------------------------------------------------- read
    def _row(self, session, tenant_id: str, ref: str, *, lock: bool = False,
             param: str = "dictionary_id") -> PronunciationDictionaryRow:
        query = select(PronunciationDictionaryRow).where(
            PronunciationDictionaryRow.tenant_id == tenant_id, PronunciationDictionaryRow.id == ref)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise NotFound(f"no pronunciation dictionary {ref!r}", param=param)
        return row

    def get(self, tenant_id: str, ref: str) -> DictionaryInfo:
        with self._db.transaction(tenant_id) as session:
            return _info(self._row(session, tenant_id, ref))

    def list(self, tenant_id: str) -> list[DictionaryInfo]:
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(PronunciationDictionaryRow).where(
                PronunciationDictionaryRow.tenant_id == tenant_id).order_by(
                PronunciationDictionaryRow.created_at, PronunciationDictionaryRow.id)).all()
            return [_info(r) for r in rows]

    def defaults(self, tenant_id: str) -> list[DictionaryInfo]:
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(PronunciationDictionaryRow).where(
                PronunciationDictionaryRow.tenant_id == tenant_id,
                PronunciationDictionaryRow.default_rank.is_not(None)).order_by(
                PronunciationDictionaryRow.default_rank)).all()
            return [_info(r) for r in rows]

    def versions(self, tenant_id: str, ids: list[str] | None,
                 param: str = "pronunciation_dictionaries") -> list[tuple[str, int]]:
        """The current (id, version) of each dictionary a request applies, in order: those
        of `ids` (404 for one the tenant has not), or the tenant's defaults (`ids` None).
        One small read per request; the entries are read only for a version not yet seen
        (`entries`)."""
        table = PronunciationDictionaryRow
        with self._db.transaction(tenant_id) as session:
            if ids is None:
                return [(i, v) for i, v in session.connection().execute(
                    _DEFAULT_VERSIONS, {"tenant": tenant_id}).all()]
            if not ids:
                return []
            found = dict(session.execute(select(table.id, table.version).where(
                table.tenant_id == tenant_id, table.id.in_(ids))).all())
        for i in ids:
            if i not in found:
                raise NotFound(f"no pronunciation dictionary {i!r}", param=param)
        return [(i, found[i]) for i in ids]

    def entries(self, tenant_id: str, ref: str) -> tuple[int, tuple[EntryData, ...]]:
        """A dictionary's current version and entries."""
        info = self.get(tenant_id, ref)
        return info.version, info.entries
