"""Machine-readable marks that say a file is AI-generated (EU AI Act Art. 50(2)), each in its
format's own metadata, read back by any tag reader (mutagen, PyAV/ffprobe):

- mp3: ID3v2.4 TXXX frames (AI_GENERATED, AI_GENERATOR, AI_MODEL_KIND, AI_REQUEST_ID), TSSE
  (the generator) and a COMM comment;
- aac: the same ID3v2 tag before the ADTS frames (the service's aac is an ADTS stream, not an
  MP4 container, so MP4 atoms have nowhere to go; ID3-before-ADTS is what ffmpeg, mutagen and
  HLS timed metadata read);
- opus (Ogg) and flac: Vorbis comments (AI_GENERATED=true, ..., ENCODER, COMMENT);
- wav: a RIFF LIST/INFO chunk (ISFT: the generator, ICMT: the fields as `key=value; ...`);
- pcm has no container: its mark is the response's X-AI-* headers (`mark_headers`), as is a
  stream's (headers are sent before the first audio, so marking costs a stream nothing).

A signed C2PA manifest (deployments.audio.content_credentials) is embedded after the mark:
in mp3 it joins the mark's ID3 tag (a GEOB frame); in flac the library puts it in an ID3 tag
before `fLaC`, which `sniff_format` and `read_mark` step over.

`embed_mark` returns new bytes (the audio frames are untouched), `read_mark` finds a mark in
any of these; both are plain Python, no Ray.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from .formats import AudioFormat

#: The generator named in every mark.
GENERATOR = "Qwen3-TTS Serve"
#: Tag names (upper-case keys in Vorbis comments and ID3 TXXX descriptions).
FIELDS = ("AI_GENERATED", "AI_GENERATOR", "AI_MODEL_KIND", "AI_REQUEST_ID")


@dataclass(frozen=True)
class AIMark:
    """What a mark says: that the audio is AI-generated, by what, with which model kind, for
    which request."""

    model_kind: str
    request_id: str
    generator: str = GENERATOR

    def fields(self) -> dict[str, str]:
        return {"AI_GENERATED": "true", "AI_GENERATOR": self.generator,
                "AI_MODEL_KIND": self.model_kind, "AI_REQUEST_ID": self.request_id}

    def comment(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.fields().items())

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> AIMark | None:
        if str(fields.get("AI_GENERATED", "")).lower() != "true":
            return None
        return cls(model_kind=fields.get("AI_MODEL_KIND", ""),
                   request_id=fields.get("AI_REQUEST_ID", ""),
                   generator=fields.get("AI_GENERATOR", ""))

    def as_dict(self) -> dict[str, str | bool]:
        return {"ai_generated": True, "generator": self.generator,
                "model_kind": self.model_kind, "request_id": self.request_id}


def mark_headers(mark: AIMark) -> dict[str, str]:
    """The mark as response headers (every audio response; the only mark of pcm and streams)."""
    return {"X-AI-Generated": "true", "X-AI-Generator": mark.generator,
            "X-AI-Model-Kind": mark.model_kind, "X-AI-Request-Id": mark.request_id}


def embed_mark(data: bytes, fmt: AudioFormat | str, mark: AIMark) -> bytes:
    """`data` (a whole file of `fmt`) with `mark` in its metadata; pcm is returned as is."""
    fmt = AudioFormat(fmt)
    if fmt in (AudioFormat.MP3, AudioFormat.AAC):
        return _id3(mark) + data
    if fmt is AudioFormat.WAV:
        return _wav_with_info(data, mark)
    if fmt in (AudioFormat.FLAC, AudioFormat.OPUS):
        return _vorbis_comments(data, fmt, mark)
    return data


def sniff_format(data: bytes) -> str | None:
    """Which of the marked formats `data` looks like (by its first bytes), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "opus"
    if data[:3] == b"ID3":  # before mp3 and aac frames, and a C2PA manifest's before flac
        return "flac" if data[_id3_size(data):][:4] == b"fLaC" else _sniff_frames(
            data[_id3_size(data):])
    return _sniff_frames(data)


def _sniff_frames(data: bytes) -> str | None:
    if data[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "aac"
    if data[:1] == b"\xff" and len(data) > 1 and data[1] & 0xE0 == 0xE0:
        return "mp3"
    return None


def read_mark(data: bytes) -> AIMark | None:
    """The mark of a file of any marked format, or None (no mark, or not a format marked)."""
    try:
        if data[:3] == b"ID3":  # the mark's own tag (mp3, aac), or a C2PA manifest's (flac)
            mark = _read_id3(data)
            rest = data[_id3_size(data):]
            return mark if mark is not None else read_mark(rest)
        if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            return _read_wav_info(data)
        if data[:4] in (b"fLaC", b"OggS"):
            return _read_vorbis(data)
    except Exception:  # noqa: BLE001 - a damaged or foreign file has no mark we can read
        return None
    return None


# ----------------------------------------------------------------------------- ID3 (mp3, aac)
def _id3_size(data: bytes) -> int:
    """The length of the ID3v2 tag `data` starts with (header, frames, and a footer if any)."""
    footer = 10 if len(data) > 5 and data[5] & 0x10 else 0
    return 10 + footer + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))


def _id3(mark: AIMark) -> bytes:
    from mutagen.id3 import COMM, ID3, TSSE, TXXX

    tag = ID3()
    for key, value in mark.fields().items():
        tag.add(TXXX(encoding=3, desc=key, text=[value]))
    tag.add(TSSE(encoding=3, text=[mark.generator]))
    tag.add(COMM(encoding=3, lang="eng", desc="", text=[mark.comment()]))
    buf = io.BytesIO()
    tag.save(buf, v2_version=4, padding=lambda info: 0)
    return buf.getvalue()


def _read_id3(data: bytes) -> AIMark | None:
    from mutagen.id3 import ID3

    tag = ID3(io.BytesIO(data))
    return AIMark.from_fields({frame.desc: str(frame.text[0])
                               for frame in tag.getall("TXXX") if frame.text})


# -------------------------------------------------------------------- Vorbis comments (flac, opus)
def _vorbis_comments(data: bytes, fmt: AudioFormat, mark: AIMark) -> bytes:
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus

    buf = io.BytesIO(data)
    audio = FLAC(buf) if fmt is AudioFormat.FLAC else OggOpus(buf)
    if audio.tags is None:
        audio.add_tags()
    for key, value in mark.fields().items():
        audio.tags[key] = value
    audio.tags["ENCODER"] = mark.generator
    audio.tags["COMMENT"] = mark.comment()
    buf.seek(0)
    audio.save(buf)
    return buf.getvalue()


def _read_vorbis(data: bytes) -> AIMark | None:
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus

    audio = FLAC(io.BytesIO(data)) if data[:4] == b"fLaC" else OggOpus(io.BytesIO(data))
    if audio.tags is None:
        return None
    return AIMark.from_fields({k.upper(): v[0] for k, v in audio.tags.as_dict().items() if v})


# ------------------------------------------------------------------------- RIFF LIST/INFO (wav)
def _info_entry(chunk_id: bytes, text: str) -> bytes:
    value = text.encode("utf-8") + b"\x00"
    pad = b"\x00" if len(value) % 2 else b""
    return chunk_id + struct.pack("<I", len(value)) + value + pad


def _wav_with_info(data: bytes, mark: AIMark) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    body = b"INFO" + _info_entry(b"ISFT", mark.generator) + _info_entry(b"ICMT", mark.comment())
    chunk = b"LIST" + struct.pack("<I", len(body)) + body
    out = bytearray(data + (b"\x00" if len(data) % 2 else b"") + chunk)
    struct.pack_into("<I", out, 4, len(out) - 8)
    return bytes(out)


def _read_wav_info(data: bytes) -> AIMark | None:
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"LIST" and body[:4] == b"INFO":
            sub = 4
            while sub + 8 <= len(body):
                sub_id, sub_size = body[sub:sub + 4], struct.unpack_from("<I", body, sub + 4)[0]
                if sub_id == b"ICMT":
                    text = body[sub + 8:sub + 8 + sub_size].rstrip(b"\x00").decode("utf-8")
                    fields = dict(part.split("=", 1) for part in text.split("; ") if "=" in part)
                    return AIMark.from_fields(fields)
                sub += 8 + sub_size + (sub_size % 2)
        pos += 8 + size + (size % 2)
    return None
