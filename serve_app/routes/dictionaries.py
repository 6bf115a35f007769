"""Pronunciation dictionaries, per tenant: /v1/pronunciation-dictionaries.

POST creates one with its entries (or POST /import from a W3C PLS file's text); GET lists
them (without entries) or reads one (with its entries and current version); its entries are
replaced (PUT .../entries), added to (POST .../entries) or removed from
(POST .../entries/remove), each change one more version; GET .../pls exports it as a PLS
file; DELETE deletes it. GET/PUT /default: the tenant's default dictionaries, applied to
every request that names none. Another tenant's dictionary is 404, exactly as a missing one
(serve_app.platform.pronunciation). Requests apply them with `pronunciation_dictionaries`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve_app.edge.api_errors import ApiError
from serve_app.platform.pronunciation import DictionaryInfo, EntryData
from serve_app.platform.pronunciation import pls as pls_files
from serve_app.protocol.pronunciation_api import (
    CreateDictionary,
    DefaultDictionaries,
    Entries,
    Entry,
    ImportPls,
    RemoveEntries,
)
from serve_app.routes.common import admission
from serve_app.routes.contract import errors

router = APIRouter(prefix="/v1/pronunciation-dictionaries", tags=["pronunciation dictionaries"])
T = TypeVar("T")


async def _store(request: Request, method: str, *args: Any, **kwargs: Any) -> Any:
    """A call of the tenant's dictionary store (in a worker thread)."""
    gate = admission(request)
    tenant = gate.request_caller().principal.tenant_id
    fn: Callable[..., Any] = getattr(gate.platform.dictionaries, method)
    return await asyncio.to_thread(fn, tenant, *args, **kwargs)


def _entries(entries: list[Entry]) -> list[EntryData]:
    return [EntryData(e.grapheme, e.alias, e.case_sensitive, e.word_boundaries) for e in entries]


def _one(info: DictionaryInfo) -> dict:
    return info.as_dict()


@router.post("", status_code=201, responses=errors(409, 422))
async def create_dictionary(body: CreateDictionary, request: Request) -> dict:
    return _one(await _store(request, "create", body.name, _entries(body.entries),
                             description=body.description))


@router.post("/import", status_code=201, responses=errors(409, 413, 422))
async def import_pls(body: ImportPls, request: Request) -> dict:
    """A dictionary from a PLS file's alias lexemes (a <phoneme> is a 422 naming its lexeme)."""
    data = body.pls.encode()
    limit = admission(request).platform.args.pronunciation.max_pls_bytes
    if len(data) > limit:
        raise ApiError(413, "file_too_large", f"pls is {len(data)} bytes; at most {limit} "
                       "are allowed (platform.pronunciation.max_pls_bytes)", "pls")
    entries, language = pls_files.parse(data)
    return _one(await _store(request, "create", body.name, entries,
                             description=body.description, language=language))


@router.get("")
async def list_dictionaries(request: Request) -> dict:
    found = await _store(request, "list")
    return {"object": "list", "data": [d.as_dict(entries=False) for d in found]}


@router.get("/default")
async def get_default(request: Request) -> dict:
    found = await _store(request, "defaults")
    return {"object": "pronunciation_defaults", "dictionary_ids": [d.id for d in found]}


@router.put("/default", responses=errors(404, 422))
async def set_default(body: DefaultDictionaries, request: Request) -> dict:
    found = await _store(request, "set_defaults", body.dictionary_ids)
    return {"object": "pronunciation_defaults", "dictionary_ids": [d.id for d in found]}


@router.get("/{dictionary_id}")
async def get_dictionary(dictionary_id: str, request: Request) -> dict:
    return _one(await _store(request, "get", dictionary_id))


@router.get("/{dictionary_id}/pls", response_class=Response, responses={200: {
    "description": "The dictionary as a W3C PLS 1.0 file",
    "content": {pls_files.CONTENT_TYPE: {"schema": {"type": "string"}}}}})
async def export_pls(dictionary_id: str, request: Request) -> Response:
    info: DictionaryInfo = await _store(request, "get", dictionary_id)
    return Response(pls_files.render(info.entries, info.language),
                    media_type=pls_files.CONTENT_TYPE, headers={
                        "Content-Disposition": f'attachment; filename="{info.id}.pls"',
                        "X-Dictionary-Version": str(info.version)})


@router.put("/{dictionary_id}/entries", responses=errors(422))
async def replace_entries(dictionary_id: str, body: Entries, request: Request) -> dict:
    return _one(await _store(request, "replace_entries", dictionary_id, _entries(body.entries)))


@router.post("/{dictionary_id}/entries", responses=errors(422))
async def add_entries(dictionary_id: str, body: Entries, request: Request) -> dict:
    return _one(await _store(request, "add_entries", dictionary_id, _entries(body.entries)))


@router.post("/{dictionary_id}/entries/remove", responses=errors(422))
async def remove_entries(dictionary_id: str, body: RemoveEntries, request: Request) -> dict:
    return _one(await _store(request, "remove_entries", dictionary_id, body.graphemes))


@router.delete("/{dictionary_id}")
async def delete_dictionary(dictionary_id: str, request: Request) -> dict:
    info: DictionaryInfo = await _store(request, "delete", dictionary_id)
    return {"id": info.id, "object": "pronunciation_dictionary", "deleted": True}
