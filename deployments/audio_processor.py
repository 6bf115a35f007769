"""The AudioProcessor deployment: CPU audio work on whole buffers, isolated from GPU replicas.

Untrusted uploads are decoded here, so a decoder crash takes down an audio replica, never a
model replica or the ingress. Wraps the Ray-free library in `deployments.audio`. Uploads are
screened for speech (silero-vad) and a consent recording's speaker is compared with the
reference's (resemblyzer) here too, on CPU, never on a model replica; and outputs are signed
with the operator's C2PA certificate here (deployments.audio.content_credentials).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import numpy as np
from ray import serve

from deployments.args import AudioArgs, CloneArgs
from deployments.audio import (
    RenderedAudio,
    RenderOptions,
    change_speed,
    dsp,
    prepare_reference,
    render,
    shift_pitch,
    warm_up,
)
from deployments.audio.analysis import SpeakerEncoder, SpeechDetector, speaker_similarity
from deployments.audio.codecs import decode
from deployments.audio.content_credentials import ContentSigner, read_credentials
from deployments.audio.marking import AIMark, read_mark, sniff_format
from deployments.audio.reference import ReferenceAudio, ReferenceLimits
from deployments.logging_setup import configure_replica_logging

logger = logging.getLogger("qtts.audio_processor")


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=8,
    max_queued_requests=256,
)
class AudioProcessor:
    def __init__(self, args: AudioArgs, clone: CloneArgs | None = None):
        configure_replica_logging()
        self._args = args
        self._limits = ReferenceLimits(
            max_bytes=args.max_upload_bytes,
            min_seconds=args.min_reference_seconds,
            max_seconds=args.max_reference_seconds,
            min_speech_seconds=(clone or CloneArgs()).min_speech_s,
        )
        self._speech = SpeechDetector()
        self._speakers = SpeakerEncoder()
        self._signer, self._trust = _signer(args)
        # librosa's lazy imports and numba compilation (seconds of CPU) are paid once, in the
        # background at the lowest CPU priority: the replica is ready at once, and on a small
        # machine the warm-up does not slow the model replicas starting beside it. A request
        # that needs speed/pitch before it is done waits for it (the import lock).
        # the detectors are loaded too when this deployment's defaults use them (a tenant's
        # policy may still ask for a speaker check: then the first one loads the encoder)
        clone = clone or CloneArgs()
        preload = ([self._speech] if clone.min_speech_s > 0 else []) + (
            [self._speakers] if "checked" in (clone.consent, clone.consent_one_shot) else [])
        self._warm = threading.Thread(target=_warm_up_quietly, name="audio-warm-up", daemon=True,
                                      args=(preload,))
        self._warm.start()

    async def prepare_reference(self, data: bytes, param: str = "reference_audio", *,
                                screen: bool = True) -> ReferenceAudio:
        """An upload checked and prepared; `screen`: it must hold speech, and only its speech
        is kept (False for audio the service made itself, a designed voice's sample)."""
        return await asyncio.to_thread(self._prepare, data, param, screen)

    def _prepare(self, data: bytes, param: str, screen: bool) -> ReferenceAudio:
        return prepare_reference(data, limits=self._limits,
                                 target_lufs=self._args.reference_loudness_lufs, param=param,
                                 speech=self._speech if screen else None)

    async def compare_speakers(self, reference: ReferenceAudio, consent_audio: bytes) -> float:
        """How alike the speakers of a prepared reference and a consent recording are (cosine
        similarity of their speaker embeddings); the recording is screened for speech as a
        reference is (errors name `consent_audio`)."""
        def compare() -> float:
            consent = self._prepare(consent_audio, "consent_audio", True)
            return speaker_similarity(
                self._speakers.embed(reference.samples, reference.sample_rate),
                self._speakers.embed(consent.samples, consent.sample_rate))

        return await asyncio.to_thread(compare)

    async def analyze(self, data: bytes) -> dict:
        """An upload's length and the speech it holds, by the detector that screens references
        (the playground's recorder shows it while recording): `{duration_seconds,
        speech_seconds}`. Decoding errors are the caller's (AudioInputError, param `file`)."""
        def measure() -> dict:
            decoded = decode(data, max_seconds=self._limits.max_seconds, param="file")
            samples = dsp.to_mono(decoded.samples)
            found = self._speech.find(samples, decoded.sample_rate)
            return {"duration_seconds": samples.size / decoded.sample_rate,
                    "speech_seconds": found.speech_seconds}

        return await asyncio.to_thread(measure)

    async def sign(self, data: bytes, fmt: str, model_kind: str, request_id: str) -> bytes:
        """`data` (a finished, marked file) with a C2PA manifest signed by the operator's
        certificate embedded (wav, mp3, flac; other formats come back as they are). Only ids
        go into the manifest, never the text."""
        if self._signer is None:
            raise RuntimeError("no C2PA certificate is configured on this AudioProcessor")
        return await asyncio.to_thread(self._signer.sign, data, fmt,
                                       AIMark(model_kind=model_kind, request_id=request_id))

    async def read_mark(self, data: bytes) -> dict:
        """What an uploaded file says about itself: its format, AI-generated mark
        (deployments.audio.marking) and C2PA manifest as the library's Reader validates it
        (trusting the operator's own CA), parsed here, never in the ingress (untrusted bytes)."""
        def read() -> dict:
            mark = read_mark(data)
            fmt = sniff_format(data)
            return {"format": fmt, "mark": mark.as_dict() if mark is not None else None,
                    "c2pa": read_credentials(data, fmt, self._trust)}

        return await asyncio.to_thread(read)

    async def render(self, samples: np.ndarray, sample_rate: int, options: RenderOptions) -> RenderedAudio:
        return await asyncio.to_thread(render, samples, sample_rate, options)

    async def prosody(self, samples: np.ndarray, sample_rate: int, speed: float,
                      pitch: float) -> np.ndarray:
        """An SSML <prosody> span's audio at `speed` (time-stretch) and `pitch` (frequency
        ratio), float PCM in and out at `sample_rate`, as `render` applies them."""
        return await asyncio.to_thread(_prosody, samples, sample_rate, speed, pitch)


def _signer(args: AudioArgs) -> tuple[ContentSigner | None, bytes | None]:
    """The operator's signer and the CAs verify trusts (the configured trust anchors, else the
    chain's last certificate), or (None, those CAs) when outputs are not signed here."""
    cc = args.content_credentials
    trust = Path(cc.trust_anchors).expanduser().read_bytes() if cc.trust_anchors else None
    if cc.cert_chain is None:
        return None, trust
    chain = Path(cc.cert_chain).expanduser().read_bytes()
    if trust is None:
        pems = [b"-----BEGIN CERTIFICATE-----" + part for part in
                chain.split(b"-----BEGIN CERTIFICATE-----")[1:]]
        trust = pems[-1] if pems else None
    if not args.signs_outputs():
        return None, trust
    return ContentSigner(chain, Path(cc.private_key).expanduser().read_bytes(),
                         cc.signing_alg), trust


def _prosody(samples: np.ndarray, sample_rate: int, speed: float, pitch: float) -> np.ndarray:
    if pitch != 1.0:
        samples = shift_pitch(samples, sample_rate, pitch)
    if speed != 1.0:
        samples = change_speed(samples, sample_rate, speed)
    return samples.astype(np.float32)


def _warm_up_quietly(models: list[SpeechDetector | SpeakerEncoder]) -> None:
    try:  # Linux: the priority of this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    try:
        warm_up()
        for model in models:
            model.load()
    except Exception:  # noqa: BLE001 - the first request then pays the cost, or reports it
        logger.exception("audio warm-up failed")
