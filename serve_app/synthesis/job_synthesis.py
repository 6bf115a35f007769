"""Jobs as requests of the synthesis service.

The replica's job runner (serve_app.platform.jobs.runner) claims jobs and hands each segment
here: it becomes the same typed input a direct request makes (`job_input`, from the voice the
selector chose at submission) and goes through
`SynthesisService.segment`, so it is built, admitted (the job's tenant, read once per job
attempt: its quotas apply, its per-request limits applied at submission), timed out, watched
for replica loss and measured exactly as a direct request; each segment is its own usage row
`<job id>:<index>`, written once over the job's life. The joined audio is rendered as every
result is (`SynthesisService.render`: packed in the ingress, or by the AudioProcessor).
A job with `timestamps: "word"` has its words timed segment by segment once it is joined
(the service's `WordTimer`: the aligner, or the estimate) and stored beside its result,
as `JobWords` JSON: what GET /v1/jobs/{id}/captions.vtt and .srt are made from.
"""

from __future__ import annotations

import numpy as np

from deployments.audio import RenderOptions
from serve_app.app.args import VOICE_CLONE
from serve_app.edge.api_errors import invalid
from serve_app.edge.request_context import Caller
from serve_app.platform.jobs.runner import (
    EncodedAudio,
    JobRunner,
    SegmentAudio,
    plain_segments,
)
from serve_app.platform.jobs.store import ClaimedJob, JobRequest
from serve_app.protocol.speech import SpeechInput, VoiceRef
from serve_app.protocol.timestamps import WordTimings
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.cache import LRUCache
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceChoice, VoiceSelector
from serve_app.synthesis.word_timing import joined
from serve_app.text.ssml import SsmlError
from serve_app.text.ssml_split import split_document


class JobWords(WordTimings):
    """A job's stored word timestamps, with its text (what its captions' cues show)."""

    text: str


def job_input(request: JobRequest, text: str, voice: VoiceRef | None = None) -> SpeechInput:
    """One segment of a job as the input of the direct request it stands for (`voice`: the
    job's saved voice, for VoiceClone jobs): the voice decided at submission
    (`VoiceChoice.of_job`), the text of the segment."""
    params = request.params
    return VoiceChoice.of_job(request, voice).input(
        text, language=params.language or "auto", seed=params.seed,
        max_new_tokens=params.max_new_tokens, normalize=params.normalize,
        pronunciation_dictionaries=params.pronunciation_dictionaries,
        input_format=params.input_format)


def job_segments(request: JobRequest, segment_chars: int) -> list[str]:
    """A job's segments: plain text cut at sentences, or an SSML document cut at the
    `<p>`/`<s>`/sentence boundaries of its parsed document into documents of their own
    (serve_app.text.ssml_split; checked at submission, `check_job_text`)."""
    if request.params.input_format == "ssml":
        return split_document(request.text, segment_chars)
    return plain_segments(request, segment_chars)


def check_job_text(text: str, input_format: str, segment_chars: int,
                   param: str = "input", timestamps: str = "none") -> None:
    """At submission: an SSML job's document is one the subset takes (422 naming `param`
    and the character offset, as on every surface) and has something to speak. Word
    timestamps of an SSML job are refused: its segments are documents of their own, and
    their words' offsets are not yet mapped back to the submitted document."""
    if input_format != "ssml":
        return
    if timestamps != "none":
        raise invalid("timestamps", "timestamps 'word' on a job takes input_format 'text'; "
                      "an SSML job's words are not timed yet (send timestamps 'none')",
                      "unsupported_value")
    try:
        segments = split_document(text, segment_chars)
    except SsmlError as exc:
        raise invalid(param, f"{param} is not valid SSML: {exc.message} (at character "
                      f"{exc.offset}).") from None
    if not segments:
        raise invalid(param, f"{param} is SSML with nothing to speak; put text inside "
                      "<speak>.")


class JobSynthesis:
    """The job runner of one ingress replica, synthesizing through its SynthesisService."""

    def __init__(self, service: SynthesisService, admission: TenantAdmission,
                 selector: VoiceSelector):
        self._service = service
        self._admission = admission
        self._selector = selector
        self._job_voices: LRUCache[VoiceRef] = LRUCache(64)  # "<job id>:<attempt>"
        self.runner: JobRunner | None = None

    def start(self) -> None:
        """Start claiming (inside the replica's event loop)."""
        if self.runner is None:
            self.runner = self._admission.platform.job_runner(
                self.synthesize_segment, encode=self.encode,
                mark=self._service.args.audio.mark_outputs and self._service.mark,
                timings=self.timings, segment=job_segments)
        self.runner.start()

    def wake(self) -> None:
        """Look for work now (after a submission on this replica)."""
        self.start()
        assert self.runner is not None
        self.runner.wake()

    async def synthesize_segment(self, job: ClaimedJob, segment: str, index: int) -> SegmentAudio:
        caller = await self._admission.job_caller(job)
        inp = job_input(job.request, segment, await self._voice(job, caller))
        result = await self._service.segment(
            inp, caller, usage_id=f"{job.id}:{index}",
            failed_usage_id=f"{job.id}:{index}:a{job.attempt}")
        return SegmentAudio(np.asarray(result.audio, dtype=np.float32), result.sample_rate)

    async def timings(self, job: ClaimedJob, segments: list[str], pieces: list[SegmentAudio],
                      starts: list[float], scale: float) -> bytes | None:
        """The joined job's word timestamps (JSON), when it asked for them: each segment's
        words timed on its own audio, placed where it starts in the joined audio and text."""
        if job.request.params.timestamps != "word":
            return None
        voice = await self._voice(job, await self._admission.job_caller(job))
        text = job.request.text
        timed, at = [], 0
        for segment, piece, start in zip(segments, pieces, starts, strict=True):
            offset = text.find(segment, at)
            offset = at if offset < 0 else offset
            at = offset + len(segment)
            call = await self._service.prepare(job_input(job.request, segment, voice))
            timings = await self._service.timer.timings(call, segment, piece.audio,
                                                        piece.sample_rate)
            timed.append((timings, start, offset))
        last = pieces[-1]
        duration = (starts[-1] + last.audio.size / last.sample_rate) * scale
        words = joined(timed, scale, duration)
        return JobWords(words=words.words, source=words.source, text=text
                        ).model_dump_json().encode()

    async def encode(self, audio: np.ndarray, sample_rate: int, output: dict) -> EncodedAudio:
        rendered = await self._service.render(audio, sample_rate,
                                              RenderOptions.model_validate(output))
        return EncodedAudio(rendered.data, rendered.content_type, rendered.format.value,
                            rendered.duration_seconds)

    async def _voice(self, job: ClaimedJob, caller: Caller) -> VoiceRef | None:
        """The job's saved voice, loaded once per attempt."""
        voice_id = job.request.params.voice
        if job.request.model != VOICE_CLONE or not voice_id:
            return None
        key = f"{job.id}:{job.attempt}"
        voice = self._job_voices.get(key)
        if voice is None:
            voice = await self._selector.job_voice(voice_id, caller)
            self._job_voices.put(key, voice)
        return voice
