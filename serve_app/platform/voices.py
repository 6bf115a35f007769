"""Saved voices, per tenant: a clone prompt computed once, stored encrypted, usable by any
replica.

Every read and write is scoped by tenant: another tenant's voice is "not found", exactly as
an absent one. The prompt (and the reference or designed sample audio) lives in the blob
store sealed with AES-GCM, bound to tenant and voice id; the row keeps the key id. Each
replica keeps a bounded LRU of decrypted prompts; the row is read on every use, so a deleted
voice stops working on all replicas at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from deployments.engine.types import VoicePrompt
from serve_app.platform.blobs import BlobStore
from serve_app.platform.crypto import Keyring
from serve_app.platform.db import Database
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.models import VoiceRow, new_id, utcnow
from serve_app.platform.prompts import decode_prompt, encode_prompt

VoiceKind = Literal["clone", "design"]
VOICE_ID_PREFIX = "voice"


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    tenant_id: str
    name: str
    kind: str
    language: str | None
    description: str | None
    consent: bool
    consent_at: datetime | None
    created_at: datetime
    has_reference_audio: bool

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "language": self.language,
            "description": self.description, "consent": self.consent,
            "consent_at": self.consent_at.isoformat() if self.consent_at else None,
            "created_at": self.created_at.isoformat(),
        }


def _info(row: VoiceRow) -> VoiceInfo:
    return VoiceInfo(row.id, row.tenant_id, row.name, row.kind, row.language, row.description,
                     row.consent, row.consent_at, row.created_at, row.reference_blob is not None)


def _aad(tenant_id: str, voice_id: str, part: str) -> bytes:
    return f"voice:{tenant_id}:{voice_id}:{part}".encode()


def is_voice_id(value: str) -> bool:
    return value.startswith(VOICE_ID_PREFIX + "_")


class VoiceLibrary:
    def __init__(self, db: Database, blobs: BlobStore, keyring: Keyring, cache_size: int = 256):
        self._db = db
        self._blobs = blobs
        self._keyring = keyring
        self._cache: OrderedDict[tuple[str, str], VoicePrompt] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- create
    def create_clone(self, tenant_id: str, name: str, prompt: VoicePrompt, *, consent: bool,
                     reference_audio: bytes | None = None, language: str | None = None,
                     description: str | None = None) -> VoiceInfo:
        """A voice cloned from someone's recording: their consent must be recorded."""
        if consent is not True:
            raise InvalidRequest(
                "cloning a voice requires consent=true: confirm the speaker agreed to it",
                param="consent", code="consent_required",
            )
        return self._create(tenant_id, name, "clone", prompt, reference_audio, language,
                            description, consent=True)

    def create_design(self, tenant_id: str, name: str, prompt: VoicePrompt, *, description: str,
                      sample_audio: bytes | None = None, language: str | None = None) -> VoiceInfo:
        """A voice designed from a description: `prompt` is the clone prompt of a sample the
        VoiceDesign model rendered, so the voice stays the same across requests."""
        if not description.strip():
            raise InvalidRequest("a designed voice needs its description", param="description")
        return self._create(tenant_id, name, "design", prompt, sample_audio, language,
                            description, consent=False)

    def _create(self, tenant_id, name, kind, prompt, audio, language, description, *, consent):
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a voice name has 1 to 100 characters", param="name")
        if is_voice_id(name):
            raise InvalidRequest(f"a voice name may not start with '{VOICE_ID_PREFIX}_'", param="name")
        voice_id = new_id(VOICE_ID_PREFIX)
        prompt_key = f"voices/{tenant_id}/{voice_id}/prompt"
        audio_key = f"voices/{tenant_id}/{voice_id}/audio" if audio else None
        self._blobs.put(prompt_key, self._keyring.encrypt(
            encode_prompt(prompt), _aad(tenant_id, voice_id, "prompt")))
        if audio_key:
            self._blobs.put(audio_key, self._keyring.encrypt(audio, _aad(tenant_id, voice_id, "audio")))
        now = utcnow()
        row = VoiceRow(
            id=voice_id, tenant_id=tenant_id, name=name, kind=kind, language=language,
            description=description, consent=consent, consent_at=now if consent else None,
            prompt_blob=prompt_key, reference_blob=audio_key, key_id=self._keyring.primary_id,
            created_at=now,
        )
        try:
            with self._db.transaction(tenant_id) as session:
                session.add(row)
        except IntegrityError as exc:
            self._delete_blobs(prompt_key, audio_key)
            raise Conflict(f"a voice named {name!r} exists", param="name") from exc
        return _info(row)

    # --------------------------------------------------------------------------- read
    def _row(self, session, tenant_id: str, ref: str) -> VoiceRow:
        row = session.scalar(select(VoiceRow).where(
            VoiceRow.tenant_id == tenant_id, or_(VoiceRow.id == ref, VoiceRow.name == ref)))
        if row is None:
            raise NotFound(f"no saved voice {ref!r}", param="voice")
        return row

    def get(self, tenant_id: str, ref: str) -> VoiceInfo:
        """A voice by id or name, of this tenant only."""
        with self._db.transaction(tenant_id) as session:
            return _info(self._row(session, tenant_id, ref))

    def list(self, tenant_id: str) -> list[VoiceInfo]:
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(VoiceRow).where(VoiceRow.tenant_id == tenant_id)
                                   .order_by(VoiceRow.created_at, VoiceRow.id)).all()
            return [_info(r) for r in rows]

    def prompt(self, tenant_id: str, ref: str) -> VoicePrompt:
        """The clone prompt to synthesize with (decrypted once per replica, then cached)."""
        return self.resolve(tenant_id, ref)[1]

    def resolve(self, tenant_id: str, ref: str) -> tuple[str, VoicePrompt]:
        """A voice (by id or name, of this tenant only) as its id and clone prompt."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            voice_id, blob_key = row.id, row.prompt_blob
        cache_key = (voice_id, blob_key)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return voice_id, cached
        prompt = decode_prompt(self._keyring.decrypt(
            self._blobs.get(blob_key), _aad(tenant_id, voice_id, "prompt")))
        if self._cache_size > 0:
            with self._lock:
                self._cache[cache_key] = prompt
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return voice_id, prompt

    def reference_audio(self, tenant_id: str, ref: str) -> bytes | None:
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            voice_id, key = row.id, row.reference_blob
        if key is None:
            return None
        return self._keyring.decrypt(self._blobs.get(key), _aad(tenant_id, voice_id, "audio"))

    @property
    def cached_prompts(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------------------- delete
    def delete(self, tenant_id: str, ref: str) -> VoiceInfo:
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            info = _info(row)
            keys = (row.prompt_blob, row.reference_blob)
            session.delete(row)
        with self._lock:
            self._cache = OrderedDict((k, v) for k, v in self._cache.items() if k[0] != info.id)
        self._delete_blobs(*keys)
        return info

    def _delete_blobs(self, *keys: str | None) -> None:
        for key in keys:
            if key:
                self._blobs.delete(key)

    # ----------------------------------------------------------------------- rotation
    def reencrypt(self) -> int:
        """Re-seal every voice not sealed with the newest key; returns how many were."""
        with self._db.admin_transaction() as session:
            rows = session.execute(select(VoiceRow.id, VoiceRow.tenant_id, VoiceRow.prompt_blob,
                                          VoiceRow.reference_blob)
                                   .where(VoiceRow.key_id != self._keyring.primary_id)).all()
        for voice_id, tenant_id, prompt_key, audio_key in rows:
            for key, part in ((prompt_key, "prompt"), (audio_key, "audio")):
                if key:
                    aad = _aad(tenant_id, voice_id, part)
                    plain = self._keyring.decrypt(self._blobs.get(key), aad)
                    self._blobs.put(key, self._keyring.encrypt(plain, aad))
            with self._db.admin_transaction() as session:
                session.get(VoiceRow, voice_id).key_id = self._keyring.primary_id
        return len(rows)
