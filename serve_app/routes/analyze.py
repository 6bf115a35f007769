"""POST /v1/audio/analyze: how much speech a recording holds, by the same detector (silero-vad,
on the AudioProcessor) that screens clone references, and whether that is enough to clone
from (`clone.min_speech_s`). The playground's recorder sends the audio recorded so far while
recording and shows "speech: 2.4 s of 1 s needed". The file is the request body (any audio
content type) or a multipart part named `file`; nothing is kept.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.routes.common import service
from serve_app.routes.contract import errors
from serve_app.routes.uploads import read_audio_file

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])


@router.post("/analyze", responses=errors(400, 413, 415, 422))
async def analyze(request: Request) -> dict:
    """The duration and speech seconds of an audio file, and whether it holds enough speech
    to clone from."""
    svc = service(request)
    data = await read_audio_file(request, svc.args.audio.max_upload_bytes)
    found = await svc.analyze_audio(data)
    needed = svc.args.clone.min_speech_s
    return {"object": "audio.analysis",
            "duration_seconds": round(found["duration_seconds"], 2),
            "speech_seconds": round(found["speech_seconds"], 2),
            "min_speech_seconds": needed,
            "enough_speech": found["speech_seconds"] >= needed}
