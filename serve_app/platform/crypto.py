"""Encryption at rest for voice data (prompts, reference audio) and webhook secrets.

AES-256-GCM with a random 96-bit nonce. A ciphertext carries the id of the key that sealed
it, so keys rotate: VOICE_ENCRYPTION_KEYS lists `id:base64key` entries, newest first; the
first one encrypts, all of them decrypt; `qtts admin rotate-voice-key` re-encrypts old data
with the newest key, after which the old key can be removed. The associated data binds a
ciphertext to its owner (tenant and object id), so a blob copied to another tenant's voice
does not decrypt.

Layout: b"QTE1" | len(key_id) (1 byte) | key_id | nonce (12) | ciphertext+tag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from serve_app.platform.errors import ConfigurationError, PlatformError

MAGIC = b"QTE1"
NONCE_BYTES = 12


class DecryptionError(PlatformError):
    status = 500
    code = "decryption_failed"


def generate_key() -> str:
    """A new key entry for VOICE_ENCRYPTION_KEYS (`id:base64key`)."""
    raw = AESGCM.generate_key(bit_length=256)
    return f"{_key_id(raw)}:{base64.urlsafe_b64encode(raw).decode()}"


def _key_id(raw: bytes) -> str:
    return "k" + hashlib.sha256(raw).hexdigest()[:10]


def _decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError("an encryption key must be 32 bytes, base64-encoded")
    return raw


class Keyring:
    """Keys by id; the first encrypts. Never printed: repr shows only the ids."""

    def __init__(self, entries: list[tuple[str, bytes]]):
        if not entries:
            raise ConfigurationError("the keyring needs at least one key")
        self._keys = dict(entries)
        if len(self._keys) != len(entries):
            raise ConfigurationError("two encryption keys share one id")
        self.primary_id = entries[0][0]

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary_id!r}, ids={list(self._keys)!r})"

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """`id:base64key,id2:base64key2` or bare base64 keys (id derived from the key)."""
        entries = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            key_id, sep, encoded = part.rpartition(":")
            if not sep:
                encoded = part
            raw = _decode_key(encoded)
            entries.append((key_id or _key_id(raw), raw))
        return cls(entries)

    @classmethod
    def development(cls, path: Path) -> Keyring:
        """A key kept in a local file (created 0600 on first use): the embedded default
        for a single machine. Clusters must set VOICE_ENCRYPTION_KEYS."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(generate_key())
        return cls.parse(path.read_text())

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        key_id = self.primary_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[self.primary_id]).encrypt(nonce, plaintext, aad)
        return MAGIC + bytes([len(key_id)]) + key_id + nonce + sealed

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
            raise DecryptionError("not an encrypted blob")
        n = blob[len(MAGIC)]
        return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + n].decode()

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        key_id = self.key_id_of(blob)
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError(f"data is sealed with key {key_id!r}, which is not configured")
        start = len(MAGIC) + 1 + len(key_id.encode())
        nonce, sealed = blob[start : start + NONCE_BYTES], blob[start + NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise DecryptionError("encrypted data failed authentication") from exc

    def encrypt_text(self, text: str, aad: bytes = b"") -> str:
        return base64.b64encode(self.encrypt(text.encode(), aad)).decode()

    def decrypt_text(self, token: str, aad: bytes = b"") -> str:
        return self.decrypt(base64.b64decode(token), aad).decode()


DATA_MAGIC = b"QTD1"


class DataKey:
    """One object's own AES-256-GCM key (envelope encryption): the object's blobs are sealed
    with it, and it is stored only wrapped (sealed) by the service keyring. Destroying the
    wrapped key makes every copy of those blobs unreadable, backups included; rotating the
    service key re-wraps the key and leaves the blobs as they are.

    Blob layout: b"QTD1" | nonce (12) | ciphertext+tag."""

    def __init__(self, raw: bytes):
        if len(raw) != 32:
            raise ValueError("a data key is 32 bytes")
        self._raw = raw

    def __repr__(self) -> str:
        return "DataKey(...)"

    @classmethod
    def generate(cls) -> DataKey:
        return cls(AESGCM.generate_key(bit_length=256))

    def wrap(self, keyring: Keyring, aad: bytes) -> str:
        """This key sealed by the keyring's primary key, as text for a database column."""
        return keyring.encrypt_text(base64.b64encode(self._raw).decode(), aad)

    @classmethod
    def unwrap(cls, wrapped: str, keyring: Keyring, aad: bytes) -> DataKey:
        return cls(base64.b64decode(keyring.decrypt_text(wrapped, aad)))

    @staticmethod
    def wrapped_key_id(wrapped: str) -> str:
        """The id of the service key that wrapped a data key."""
        return Keyring.key_id_of(base64.b64decode(wrapped))

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return DATA_MAGIC + nonce + AESGCM(self._raw).encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        if not blob.startswith(DATA_MAGIC):
            raise DecryptionError("not a blob sealed with a data key")
        start = len(DATA_MAGIC)
        nonce, sealed = blob[start : start + NONCE_BYTES], blob[start + NONCE_BYTES :]
        try:
            return AESGCM(self._raw).decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise DecryptionError("encrypted data failed authentication") from exc
