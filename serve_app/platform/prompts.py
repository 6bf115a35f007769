"""Compact, pickle-free serialization of a clone prompt (VoicePrompt) as an .npz archive."""

from __future__ import annotations

import io

import numpy as np

from deployments.engine.types import VoicePrompt

FORMAT_VERSION = 1


def encode_prompt(prompt: VoicePrompt) -> bytes:
    arrays: dict[str, np.ndarray] = {
        "version": np.array(FORMAT_VERSION, dtype=np.int16),
        "ref_spk_embedding": np.asarray(prompt.ref_spk_embedding, dtype=np.float32),
        "x_vector_only_mode": np.array(prompt.x_vector_only_mode),
    }
    if prompt.ref_code is not None:
        arrays["ref_code"] = np.asarray(prompt.ref_code, dtype=np.int64)
    if prompt.ref_text is not None:
        arrays["ref_text"] = np.frombuffer(prompt.ref_text.encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode_prompt(data: bytes) -> VoicePrompt:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if int(archive["version"]) != FORMAT_VERSION:
            raise ValueError(f"unsupported voice prompt format {int(archive['version'])}")
        ref_text = bytes(archive["ref_text"]).decode("utf-8") if "ref_text" in archive else None
        return VoicePrompt(
            ref_spk_embedding=archive["ref_spk_embedding"],
            ref_code=archive["ref_code"] if "ref_code" in archive else None,
            ref_text=ref_text,
            x_vector_only_mode=bool(archive["x_vector_only_mode"]),
        )
