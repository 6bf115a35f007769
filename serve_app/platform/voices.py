"""Saved voices, per tenant: a clone prompt computed once, stored encrypted, usable by any
replica, and erasable for good.

Every read and write is scoped by tenant: another tenant's voice is "not found", exactly as
an absent one. A voice's data (its prompt, the reference or designed sample audio, the
consent evidence) lives in the blob store sealed with the voice's own data key (AES-GCM,
bound to tenant, voice id and part); the row keeps that key wrapped by the service key
(`key_id`). Deleting the voice deletes the row, and with it the only wrapped copy of its data
key: the blobs, wherever a copy or a backup of the blob store holds them, cannot be decrypted
again, not even with the service key. Rotating the service key re-wraps data keys only.

Each replica keeps a bounded LRU of decrypted prompts; the row is read on every use, so a
deleted voice stops working on all replicas at once. Creating, using and deleting a voice
each add a row to the tenant's audit log (serve_app.platform.audit), in the same transaction.
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
from serve_app.platform.audit import Actor, record_event
from serve_app.platform.blobs import BlobStore
from serve_app.platform.consent.evidence import ConsentEvidence
from serve_app.platform.crypto import DataKey, Keyring
from serve_app.platform.db import Database
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.models import VoiceRow, new_id, utcnow
from serve_app.platform.prompts import decode_prompt, encode_prompt

VoiceKind = Literal["clone", "design"]
VOICE_ID_PREFIX = "voice"
#: The actor of calls that name none (operator tools, tests).
NO_ACTOR = Actor()
#: A voice's sealed parts, each its own blob.
Part = Literal["prompt", "audio", "consent"]


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
    consent_level: str | None = None
    consent_similarity: float | None = None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "language": self.language,
            "description": self.description, "consent": self.consent,
            "consent_at": self.consent_at.isoformat() if self.consent_at else None,
            "consent_level": self.consent_level,
            "consent_similarity": (round(self.consent_similarity, 4)
                                   if self.consent_similarity is not None else None),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Consent:
    """How a clone voice's speaker consented: the level in force, and for `checked` the
    evidence (statement, code, similarity, recording)."""

    level: str
    evidence: ConsentEvidence | None = None


def _info(row: VoiceRow) -> VoiceInfo:
    return VoiceInfo(row.id, row.tenant_id, row.name, row.kind, row.language, row.description,
                     row.consent, row.consent_at, row.created_at, row.reference_blob is not None,
                     row.consent_level, row.consent_similarity)


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
    def create_clone(self, tenant_id: str, name: str, prompt: VoicePrompt, *, consent: Consent,
                     reference_audio: bytes | None = None, language: str | None = None,
                     description: str | None = None, actor: Actor = NO_ACTOR) -> VoiceInfo:
        """A voice cloned from someone's recording, under the consent `consent` records."""
        if consent.level == "checked" and consent.evidence is None:
            raise InvalidRequest("checked consent needs its evidence", param="consent_audio")
        return self._create(tenant_id, name, "clone", prompt, reference_audio, language,
                            description, consent, actor)

    def create_design(self, tenant_id: str, name: str, prompt: VoicePrompt, *, description: str,
                      sample_audio: bytes | None = None, language: str | None = None,
                      actor: Actor = NO_ACTOR) -> VoiceInfo:
        """A voice designed from a description: `prompt` is the clone prompt of a sample the
        VoiceDesign model rendered, so the voice stays the same across requests."""
        if not description.strip():
            raise InvalidRequest("a designed voice needs its description", param="description")
        return self._create(tenant_id, name, "design", prompt, sample_audio, language,
                            description, None, actor)

    def _create(self, tenant_id, name, kind, prompt, audio, language, description,
                consent: Consent | None, actor: Actor) -> VoiceInfo:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a voice name has 1 to 100 characters", param="name")
        if is_voice_id(name):
            raise InvalidRequest(f"a voice name may not start with '{VOICE_ID_PREFIX}_'", param="name")
        voice_id = new_id(VOICE_ID_PREFIX)
        data_key = DataKey.generate()
        evidence = consent.evidence if consent is not None else None
        parts: dict[str, bytes] = {"prompt": encode_prompt(prompt)}
        if audio:
            parts["audio"] = audio
        if evidence is not None:
            parts["consent"] = evidence.to_bytes()
        keys = {part: f"voices/{tenant_id}/{voice_id}/{part}" for part in parts}
        for part, plain in parts.items():
            self._blobs.put(keys[part], data_key.seal(plain, _aad(tenant_id, voice_id, part)))
        now = utcnow()
        consented = consent is not None and consent.level != "none"
        row = VoiceRow(
            id=voice_id, tenant_id=tenant_id, name=name, kind=kind, language=language,
            description=description, consent=consented, consent_at=now if consented else None,
            prompt_blob=keys["prompt"], reference_blob=keys.get("audio"),
            key_id=self._keyring.primary_id,
            data_key=data_key.wrap(self._keyring, _aad(tenant_id, voice_id, "data_key")),
            consent_level=consent.level if consent is not None else None,
            consent_similarity=evidence.similarity if evidence is not None else None,
            consent_blob=keys.get("consent"), created_at=now,
        )
        detail = {"kind": kind}
        if consent is not None:
            detail["consent"] = consent.level
        if evidence is not None:
            detail["similarity"] = round(evidence.similarity, 4)
        try:
            with self._db.transaction(tenant_id) as session:
                session.add(row)
                record_event(session, tenant_id, "voice.created", actor, voice_id=voice_id,
                             service_key_id=row.key_id, detail=detail)
        except IntegrityError as exc:
            self._delete_blobs(*keys.values())
            raise Conflict(f"a voice named {name!r} exists", param="name") from exc
        return _info(row)

    # --------------------------------------------------------------------------- read
    def _row(self, session, tenant_id: str, ref: str) -> VoiceRow:
        row = session.scalar(select(VoiceRow).where(
            VoiceRow.tenant_id == tenant_id, or_(VoiceRow.id == ref, VoiceRow.name == ref)))
        if row is None:
            raise NotFound(f"no saved voice {ref!r}", param="voice")
        return row

    def _open(self, tenant_id: str, voice_id: str, data_key: str | None, blob_key: str,
              part: Part) -> bytes:
        """A part of a voice, decrypted with its data key (or, for a voice saved before data
        keys, the service key)."""
        aad = _aad(tenant_id, voice_id, part)
        blob = self._blobs.get(blob_key)
        if data_key is None:
            return self._keyring.decrypt(blob, aad)
        key = DataKey.unwrap(data_key, self._keyring, _aad(tenant_id, voice_id, "data_key"))
        return key.open(blob, aad)

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

    def resolve(self, tenant_id: str, ref: str, actor: Actor | None = None
                ) -> tuple[str, VoicePrompt]:
        """A voice (by id or name, of this tenant only) as its id and clone prompt; with an
        `actor`, its use is added to the audit log."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            voice_id, blob_key, data_key = row.id, row.prompt_blob, row.data_key
            if actor is not None:
                record_event(session, tenant_id, "voice.used", actor, voice_id=voice_id,
                             service_key_id=row.key_id)
        cache_key = (voice_id, blob_key)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return voice_id, cached
        prompt = decode_prompt(self._open(tenant_id, voice_id, data_key, blob_key, "prompt"))
        if self._cache_size > 0:
            with self._lock:
                self._cache[cache_key] = prompt
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return voice_id, prompt

    def reference_audio(self, tenant_id: str, ref: str) -> bytes | None:
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            voice_id, key, data_key = row.id, row.reference_blob, row.data_key
        if key is None:
            return None
        return self._open(tenant_id, voice_id, data_key, key, "audio")

    def consent_evidence(self, tenant_id: str, ref: str) -> ConsentEvidence | None:
        """A checked consent's evidence, decrypted (for an operator's inquiry; never logged)."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            voice_id, key, data_key = row.id, row.consent_blob, row.data_key
        if key is None:
            return None
        return ConsentEvidence.from_bytes(self._open(tenant_id, voice_id, data_key, key, "consent"))

    @property
    def cached_prompts(self) -> int:
        return len(self._cache)

    # ------------------------------------------------------------------------- delete
    def delete(self, tenant_id: str, ref: str, actor: Actor = NO_ACTOR) -> VoiceInfo:
        """Erase a voice: its row goes, and with it the only wrapped copy of its data key
        (what was sealed with it is unreadable from then on, backups of the blob store
        included); then its blobs are deleted."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, ref)
            info = _info(row)
            keys = (row.prompt_blob, row.reference_blob, row.consent_blob)
            record_event(session, tenant_id, "voice.deleted", actor, voice_id=row.id,
                         service_key_id=row.key_id)
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
        """Bring every voice under the newest service key; returns how many were. A voice
        with a data key has only that key re-wrapped (its blobs stay as they are); a voice
        saved before data keys gets one, and its blobs are sealed with it."""
        with self._db.admin_transaction() as session:
            rows = session.execute(select(
                VoiceRow.id, VoiceRow.tenant_id, VoiceRow.data_key, VoiceRow.prompt_blob,
                VoiceRow.reference_blob, VoiceRow.consent_blob)
                .where(or_(VoiceRow.key_id != self._keyring.primary_id,
                           VoiceRow.data_key.is_(None)))).all()
        for voice_id, tenant_id, wrapped, *blobs in rows:
            key_aad = _aad(tenant_id, voice_id, "data_key")
            if wrapped is not None:
                data_key = DataKey.unwrap(wrapped, self._keyring, key_aad)
            else:
                data_key = DataKey.generate()
                for blob_key, part in zip(blobs, ("prompt", "audio", "consent"), strict=True):
                    if blob_key:
                        aad = _aad(tenant_id, voice_id, part)
                        plain = self._keyring.decrypt(self._blobs.get(blob_key), aad)
                        self._blobs.put(blob_key, data_key.seal(plain, aad))
            with self._db.admin_transaction() as session:
                row = session.get(VoiceRow, voice_id)
                row.data_key = data_key.wrap(self._keyring, key_aad)
                row.key_id = self._keyring.primary_id
        return len(rows)
