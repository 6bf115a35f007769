"""Signing: a C2PA manifest embedded into a finished file, with the operator's certificate.

Which formats: the library (c2pa-rs) embeds into RIFF/WAVE, MP3 (an ID3 GEOB frame) and FLAC
(a metadata block). It has no handler for Ogg (opus) or an ADTS stream (aac), and raw pcm has
no container at all: those keep only the metadata mark (deployments.audio.marking) and the
X-AI-* headers. A stream cannot carry a manifest either (its hash covers the whole file,
which does not exist when the first bytes leave): its mark is the headers.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from ..formats import AudioFormat
from ..marking import AIMark

#: The formats a manifest is embedded into, and the MIME type the library is told.
C2PA_FORMATS: dict[AudioFormat, str] = {
    AudioFormat.WAV: "audio/wav",
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.FLAC: "audio/flac",
}
#: IPTC's digital source type for media made by a model trained on sampled content.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: This service's own assertion: what the mark says, inside the signed manifest.
GENERATION_ASSERTION = "org.qwen3-tts-serve.generation"


def manifest_definition(mark: AIMark) -> dict:
    """The manifest of one output: created by a trained model (c2pa.actions), the generator,
    model kind and request id (never the input text)."""
    return {
        "claim_generator_info": [{"name": mark.generator}],
        "title": f"{mark.model_kind} speech {mark.request_id}",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": mark.generator},
            }]}},
            {"label": GENERATION_ASSERTION, "data": {
                "ai_generated": True, "generator": mark.generator,
                "model_kind": mark.model_kind, "request_id": mark.request_id,
            }},
        ],
    }


class ContentSigner:
    """The operator's signer: a PEM certificate chain (the signing certificate first, then its
    issuers) and the signing certificate's private key, read once from the paths the
    deployment names. Thread-safe (the library's Signer is used under a lock)."""

    def __init__(self, cert_chain: bytes, private_key: bytes, alg: str = "es256"):
        import c2pa

        self.alg = alg
        self.cert_chain = cert_chain
        self._info = c2pa.C2paSignerInfo(alg.encode(), cert_chain, private_key, None)
        self._signer = c2pa.Signer.from_info(self._info)  # fails here on a bad key
        self._lock = threading.Lock()
        self._check()

    def _check(self) -> None:
        """Sign a tenth of a second of silence and validate it, so that a chain the library
        will not sign with (garbage, a self-signed or CA certificate, a key of another
        certificate) fails the deployment when it starts, not every request."""
        import numpy as np

        from ..codecs import encode
        from .reading import read_credentials

        sample = encode(np.zeros(2400, dtype=np.float32), 24_000, AudioFormat.WAV)
        try:
            found = read_credentials(self.sign(sample, AudioFormat.WAV, AIMark("check", "check")),
                                     AudioFormat.WAV)
        except Exception as exc:  # the library's own words say what is wrong with the chain
            raise ValueError(f"content_credentials: the certificate chain cannot sign: {exc}"
                             ) from exc
        if found is None or not found["valid"]:
            errors = found["validation_errors"] if found else "no manifest"
            raise ValueError("content_credentials: a manifest signed with this certificate "
                             f"does not validate: {errors}")

    @classmethod
    def from_files(cls, cert_chain: str | Path, private_key: str | Path,
                   alg: str = "es256") -> ContentSigner:
        return cls(Path(cert_chain).expanduser().read_bytes(),
                   Path(private_key).expanduser().read_bytes(), alg)

    def sign(self, data: bytes, fmt: AudioFormat | str, mark: AIMark) -> bytes:
        """`data` (a whole file of `fmt`) with a signed manifest embedded; a format the library
        cannot embed into is returned as is."""
        import c2pa

        mime = C2PA_FORMATS.get(AudioFormat(fmt))
        if mime is None:
            return data
        out = io.BytesIO()
        with self._lock, c2pa.Builder(manifest_definition(mark)) as builder:
            builder.sign(self._signer, mime, io.BytesIO(data), out)
        return out.getvalue()
