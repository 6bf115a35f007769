"""A request's pronunciation dictionaries, resolved once per request for every surface.

`SynthesisService.prepare` asks `Pronunciations.lexicon` with the ids the request named
(`pronunciation_dictionaries`; None: the caller's tenant's defaults) and hands the
`Lexicon` to the call builder, which applies it after normalization. Each request reads the
dictionaries' current versions (one small read, scoped to the caller's tenant, so another
tenant's id is a 404 exactly as a missing one); the entries are read and compiled only for a
version this replica has not seen, so an edit is in force on every replica at once. Without
a platform (the Ray-free route tests) there are no dictionaries: naming one is a 404.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from serve_app.edge.request_context import Caller
from serve_app.platform.errors import NotFound
from serve_app.synthesis.cache import LRUCache
from serve_app.text.lexicon import Lexicon, Rule

if TYPE_CHECKING:
    from serve_app.synthesis.admission import TenantAdmission

PARAM = "pronunciation_dictionaries"


class Pronunciations:
    def __init__(self, admission: TenantAdmission | None, cache_size: int = 256) -> None:
        self._admission = admission
        self._rules: LRUCache[list[Rule]] = LRUCache(cache_size)  # tenant:id:version
        self._lexicons: LRUCache[Lexicon] = LRUCache(cache_size)  # tenant and versions

    async def lexicon(self, ids: tuple[str, ...] | None, caller: Caller | None = None
                      ) -> Lexicon:
        """The dictionaries `ids` (in order, each once), or the tenant's defaults, as one
        Lexicon; `caller`: whose (default: the current request's)."""
        if self._admission is None:
            if ids:
                raise NotFound(f"no pronunciation dictionary {ids[0]!r}", param=PARAM)
            return Lexicon()
        caller = caller or await self._admission.caller()
        tenant = caller.principal.tenant_id
        store = self._admission.platform.dictionaries
        wanted = None if ids is None else list(dict.fromkeys(ids))
        versions = await asyncio.to_thread(store.versions, tenant, wanted, PARAM)
        if not versions:
            return Lexicon()
        key = f"{tenant}:" + ",".join(f"{i}@{v}" for i, v in versions)
        lexicon = self._lexicons.get(key)
        if lexicon is None:
            lexicon = Lexicon([await self._dictionary(tenant, i, v) for i, v in versions])
            self._lexicons.put(key, lexicon)
        return lexicon

    async def _dictionary(self, tenant: str, dictionary_id: str, version: int) -> list[Rule]:
        rules = self._rules.get(f"{tenant}:{dictionary_id}:{version}")
        if rules is None:
            assert self._admission is not None
            read, entries = await asyncio.to_thread(
                self._admission.platform.dictionaries.entries, tenant, dictionary_id)
            rules = [Rule(e.grapheme, e.alias, e.case_sensitive, e.word_boundaries)
                     for e in entries]
            self._rules.put(f"{tenant}:{dictionary_id}:{read}", rules)
        return rules
