"""What is kept of a checked consent: the statement and its code, the speaker similarity and
the threshold it passed, the encoder, the times, and the recording itself. Stored with the
voice as one sealed blob (serve_app.platform.voices), erased with it."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass

#: The speaker encoder the similarity comes from (deployments.audio.analysis).
SPEAKER_ENCODER = "resemblyzer-ge2e-0.1.4"


@dataclass(frozen=True)
class ConsentEvidence:
    statement_id: str
    statement: str
    code: str
    language: str
    issued_at: str
    consented_at: str
    similarity: float
    threshold: float
    recording: bytes  # the consent recording as uploaded
    encoder: str = SPEAKER_ENCODER

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data["recording"] = base64.b64encode(self.recording).decode()
        return json.dumps(data, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ConsentEvidence:
        data = json.loads(raw)
        data["recording"] = base64.b64decode(data["recording"])
        return cls(**data)
