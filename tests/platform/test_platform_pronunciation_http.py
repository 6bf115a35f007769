"""Pronunciation dictionaries through the real routes, SynthesisService, platform and the
AudioProcessor's own class, without Ray: models that record the text they are given stand in
for the model deployments, so each test reads exactly what the model received.

A dictionary's entry changes the model's text on every surface (the seed route, OpenAI's
/v1/audio/speech streamed and whole, /v1/audio/design, /v1/audio/clone, a saved voice, jobs,
speech sessions over the WebSocket and the handle API), named by id or as the tenant's
default; usage counts the user's characters; another tenant's dictionary is a 404 to read and
to use; the CRUD routes, PLS import and export, and the limits answer with the field named.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from platform_testing import RECORDED, make_prompt  # noqa: I001 - tests/platform helper

from deployments.audio_processor import AudioProcessor
from deployments.engine.types import AudioChunk, FinishReason, ModelInfo, ModelKind, SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.platform.consent import ConsentPolicy
from serve_app.protocol.session_api import SessionSettings
from serve_app.protocol.speech import CustomVoiceInput
from serve_app.routes.common import ReplicaServices
from serve_app.sessions.incremental_speaker import ReplicaTextRelay
from serve_app.sessions.speech_session import handle_session
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.job_synthesis import JobSynthesis
from serve_app.synthesis.saved_voices import SavedVoices
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceSelector
from tests.fake_handles import FakeHandle, Remote
from tests.speech import require_speech, speak
from tests.waiting import wait_for

RATE = 24000
TEXT = "Qwen reads this."
SPOKEN = "chwen reads this."
ENTRY = {"grapheme": "Qwen", "alias": "chwen"}


def _info(kind: ModelKind, speakers: tuple[str, ...] = ()) -> ModelInfo:
    return ModelInfo(kind=kind, model="tiny", speakers=speakers, dialect_speakers={},
                     languages=("auto", "english"), sample_rate=RATE, device="cpu",
                     dtype="float32", model_size="tiny")


class _Stream:
    """A model's response generator: one chunk of audio, then the final chunk."""

    def __init__(self) -> None:
        self._chunks = iter([
            AudioChunk(np.zeros(2400, np.float32), RATE, 0, 2),
            AudioChunk(np.zeros(0, np.float32), RATE, 1, 0, final=True, total_frames=2,
                       input_tokens=3, finish_reason=FinishReason.EOS)])

    def __aiter__(self):
        return self

    async def __anext__(self) -> AudioChunk:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None

    def cancel(self) -> None:
        pass


class _ArrivingTextStream:
    """A model reading text as it arrives: it pumps the relay until the input closes,
    records the text, then yields one chunk that has read all of it."""

    def __init__(self, texts: list[str], source) -> None:
        self._texts = texts
        self._source = source
        self._read: str | None = None
        self._chunks: list[AudioChunk] = []

    def __aiter__(self):
        return self

    async def __anext__(self) -> AudioChunk:
        if self._read is None:
            into = _Collected()
            await self._source.pump(into)
            self._read = into.text
            self._texts.append(into.text)
            n = len(into.text)
            self._chunks = [AudioChunk(np.zeros(2400, np.float32), RATE, 0, 2, text_chars=n),
                            AudioChunk(np.zeros(0, np.float32), RATE, 1, 0, final=True,
                                       total_frames=2, input_tokens=3, text_chars=n,
                                       finish_reason=FinishReason.EOS)]
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    def cancel(self) -> None:
        pass


class _Collected:
    """A TextInput's shape: what the relay's pump appends."""

    def __init__(self) -> None:
        self.text = ""

    def append(self, delta: str) -> None:
        self.text += delta

    def close(self) -> None:
        pass


class _LocalRelay:
    """The TextRelay actor's shape in this process (no Ray): puts are fire-and-forget."""

    def __init__(self) -> None:
        from deployments.text_relay import RelayedText

        self._texts: dict[str, RelayedText] = collections.defaultdict(RelayedText)
        self.put = Remote(lambda key, start, delta, closed=False:
                          self._texts[key].add(start, delta, closed))
        self.drop = Remote(self._drop)
        self.read = Remote(self._read)

    def _drop(self, key: str) -> None:
        entry = self._texts[key]
        entry.closed = True
        entry.changed.set()

    async def _read(self, key: str, cursor: int) -> tuple[str, bool]:
        entry = self._texts[key]
        while len(entry.text) <= cursor and not entry.closed:
            entry.changed.clear()
            await entry.changed.wait()
        return entry.text[cursor:], entry.closed


class _LocalReplicaRelay(ReplicaTextRelay):
    def __init__(self) -> None:
        super().__init__()
        self._handle = _LocalRelay()


class RecordingModel:
    """A model deployment that records what it was asked to read."""

    def __init__(self, info: ModelInfo) -> None:
        self._info = info
        self.texts: list[str] = []

    async def info(self) -> ModelInfo:
        return self._info

    def _result(self, request) -> SynthesisResult:
        self.texts.append(request.text)
        return SynthesisResult(np.zeros(2400, np.float32), RATE, 2)

    async def synthesize(self, request) -> SynthesisResult:
        return self._result(request)

    async def synthesize_with_reference(self, request, reference, ref_text, x_vector_only):
        return self._result(request)

    def stream(self, request) -> _Stream:
        self.texts.append(request.text)
        return _Stream()

    def stream_text(self, request, source) -> _ArrivingTextStream:
        """Incremental text: read it all from the relay, record it, then speak it."""
        return _ArrivingTextStream(self.texts, source)

    async def voice_prompt(self, reference, ref_text, x_vector_only):
        return make_prompt()


@pytest.fixture
def graph(platform):
    """The app over recording models, with a job runner; `client` acts for tenant acme."""
    args = AppArgs()
    audio = AudioProcessor.func_or_class(args.audio, args.clone)
    models = {"CustomVoice": RecordingModel(_info(ModelKind.CUSTOM_VOICE, ("ryan", "vivian"))),
              "VoiceDesign": RecordingModel(_info(ModelKind.VOICE_DESIGN)),
              "VoiceClone": RecordingModel(_info(ModelKind.BASE))}
    admission = TenantAdmission(platform)
    svc = SynthesisService(args, {k: FakeHandle(m) for k, m in models.items()},
                           FakeHandle(audio), admission)
    selector = VoiceSelector(svc, SavedVoices(admission, svc))
    replica = ReplicaServices(svc, admission, selector, JobSynthesis(svc, admission, selector),
                              text_relay=_LocalReplicaRelay())
    tenant = platform.tenants.create("acme")
    with TestClient(create_http_app(replica), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {platform.keys.create('acme').secret}"
        yield Graph(client, models, svc, selector, tenant.id, platform)


class Graph:
    def __init__(self, client, models, svc, selector, tenant_id, platform):
        self.client = client
        self.models = models
        self.svc = svc
        self.selector = selector
        self.tenant_id = tenant_id
        self.platform = platform

    def dictionary(self, entries=(ENTRY,), client=None) -> str:
        r = (client or self.client).post("/v1/pronunciation-dictionaries",
                                         json={"name": "brands", "entries": list(entries)})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def last_text(self, model: str = "CustomVoice") -> str:
        return self.models[model].texts[-1]


def _speech(graph: Graph, **body):
    return graph.client.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "pcm", **body})


# ------------------------------------------------------------------------- every surface
def test_a_named_dictionary_changes_what_the_model_reads_on_openai_speech(graph):
    pdict = graph.dictionary()
    r = _speech(graph, pronunciation_dictionaries=[pdict])
    assert r.status_code == 200, r.text
    assert graph.last_text() == SPOKEN
    r = _speech(graph, pronunciation_dictionaries=[pdict], stream_format="audio", seed=4)
    assert r.status_code == 200, r.text
    assert graph.last_text() == SPOKEN
    r = _speech(graph, seed=5)  # named none, and the tenant has no default
    assert r.status_code == 200 and graph.last_text() == TEXT


def test_a_dictionary_applies_after_normalization_and_in_ssml_text(graph):
    pdict = graph.dictionary([{"grapheme": "three", "alias": "tree"}])
    r = _speech(graph, input="I have 3 cats.", language="en", pronunciation_dictionaries=[pdict])
    assert r.status_code == 200, r.text
    assert graph.last_text() == "I have tree cats."
    r = _speech(graph, input='<speak>three <sub alias="three">3</sub></speak>',
                input_format="ssml", language="en", pronunciation_dictionaries=[pdict], seed=2)
    assert r.status_code == 200, r.text
    assert graph.last_text() == "tree three"  # an alias the document wrote stays as written


def test_the_seed_route_applies_a_named_dictionary(graph):
    pdict = graph.dictionary()
    r = graph.client.post("/api/tts/synthesize", json={
        "text": TEXT, "speaker": "Ryan", "pronunciation_dictionaries": [pdict]})
    assert r.status_code == 200, r.text
    assert graph.last_text() == SPOKEN


def test_design_and_a_saved_voice_apply_it(graph):
    pdict = graph.dictionary()
    r = graph.client.post("/v1/audio/design", json={
        "input": TEXT, "description": "a calm voice", "response_format": "wav",
        "pronunciation_dictionaries": [pdict]})
    assert r.status_code == 200, r.text
    assert graph.last_text("VoiceDesign") == SPOKEN
    voice = graph.platform.voices.create_clone(graph.tenant_id, "narrator", make_prompt(),
                                               consent=RECORDED)
    r = _speech(graph, voice=voice.id, pronunciation_dictionaries=[pdict])
    assert r.status_code == 200, r.text
    assert graph.last_text("VoiceClone") == SPOKEN


def test_clone_from_an_upload_applies_it(graph):
    require_speech()
    graph.platform.set_tenant_consent("acme", ConsentPolicy(one_shot="none"))
    pdict = graph.dictionary()
    r = graph.client.post("/v1/audio/clone", data={
        "input": TEXT, "x_vector_only": "true", "response_format": "wav",
        "pronunciation_dictionaries": pdict}, files={
        "reference_audio": ("ref.wav", speak("kal", "The birch canoe slid on the smooth "
                                                    "planks."), "audio/wav")})
    assert r.status_code == 200, r.text
    assert graph.last_text("VoiceClone") == SPOKEN


def test_the_tenants_default_applies_when_a_request_names_none(graph):
    pdict = graph.dictionary()
    r = graph.client.put("/v1/pronunciation-dictionaries/default",
                         json={"dictionary_ids": [pdict]})
    assert r.status_code == 200 and r.json()["dictionary_ids"] == [pdict]
    assert graph.client.get("/v1/pronunciation-dictionaries/default").json()[
        "dictionary_ids"] == [pdict]
    assert _speech(graph).status_code == 200 and graph.last_text() == SPOKEN
    # [] turns the default off for one request
    r = _speech(graph, pronunciation_dictionaries=[], seed=8)
    assert r.status_code == 200 and graph.last_text() == TEXT


def test_a_job_applies_its_dictionaries_to_every_segment(graph):
    pdict = graph.dictionary()
    r = graph.client.post("/v1/jobs", json={
        "model": "CustomVoice", "voice": "Ryan", "input": f"{TEXT} " * 8,
        "response_format": "wav", "pronunciation_dictionaries": [pdict]})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    finished = wait_for(lambda: graph.client.get(f"/v1/jobs/{job}").json()["status"] in (
        "succeeded", "failed"), timeout=60)
    assert finished and graph.client.get(f"/v1/jobs/{job}").json()["status"] == "succeeded"
    segments = graph.models["CustomVoice"].texts
    assert len(segments) > 1 and all("Qwen" not in s and "chwen" in s for s in segments)


def _job(graph: Graph, **body) -> tuple[str, dict]:
    r = graph.client.post("/v1/jobs", json={"model": "CustomVoice", "voice": "Ryan",
                                            "response_format": "wav", **body})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    finished = wait_for(lambda: graph.client.get(f"/v1/jobs/{job}").json()["status"] in (
        "succeeded", "failed"), timeout=60)
    status = graph.client.get(f"/v1/jobs/{job}").json()
    assert finished and status["status"] == "succeeded", status
    return job, status


def _ssml_job_document(pause: str) -> str:
    sentence = "Qwen speaks the sentence number {} of this long document. "
    paragraphs = "".join(f"<p>{sentence.format(i) * 2}</p>" for i in range(1, 7))
    return (f"<speak>{paragraphs}<p>Before the pause.{pause}After the "
            "<sub alias=\"World Wide Web\">WWW</sub> pause.</p></speak>")


def test_an_ssml_job_is_split_at_the_documents_paragraphs_with_its_breaks(graph):
    import soundfile as sf

    pdict = graph.dictionary()
    model = graph.models["CustomVoice"]
    durations = {}
    for pause in ("", '<break time="700ms"/>'):
        before = len(model.texts)
        job, _ = _job(graph, input=_ssml_job_document(pause), input_format="ssml", seed=3,
                      pronunciation_dictionaries=[pdict])
        texts = [t.strip() for t in model.texts[before:]]
        # segments at paragraph ends (each paragraph is 2 sentences), never inside markup
        assert len(texts) > 2 and all("<" not in t and ">" not in t for t in texts), texts
        assert texts[0].startswith("chwen speaks the sentence number one")
        assert "World Wide Web" in texts[-1] and "WWW" not in " ".join(texts)
        if pause:  # the break splits the last paragraph into two model requests
            assert texts[-2:] == ["Before the pause.", "After the World Wide Web pause."]
        audio = graph.client.get(f"/v1/jobs/{job}/audio").content
        data, rate = sf.read(io.BytesIO(audio))
        durations[pause] = len(data) / rate
    # the break's silence is in the job's audio (each model request here is 0.1 s long)
    added = durations['<break time="700ms"/>'] - durations[""]
    assert 0.7 + 0.1 - 0.05 <= added <= 0.7 + 0.1 + 0.05, durations


def test_malformed_ssml_in_a_job_is_a_422_naming_input_and_the_offset(graph):
    document = "<speak>Hello <break time='soon'/> there</speak>"
    r = graph.client.post("/v1/jobs", json={"model": "CustomVoice", "voice": "Ryan",
                                            "input": document, "input_format": "ssml"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["param"] == "input"
    assert f"at character {document.index('<break')}" in error["message"], error
    r = graph.client.post("/v1/jobs", json={"model": "CustomVoice", "voice": "Ryan",
                                            "input": "<speak>unclosed", "input_format": "ssml"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input", r.text
    # an SSML job's words are not timed yet: asking for them is refused, not ignored
    r = graph.client.post("/v1/jobs", json={"model": "CustomVoice", "voice": "Ryan",
                                            "input": "<speak>Hi.</speak>",
                                            "input_format": "ssml", "timestamps": "word"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "timestamps", r.text


def test_a_job_naming_another_tenants_dictionary_is_refused_at_submission(graph):
    theirs = graph.platform.dictionaries.create(
        graph.platform.tenants.create("other").id, "secret", []).id
    r = graph.client.post("/v1/jobs", json={
        "model": "CustomVoice", "voice": "Ryan", "input": TEXT,
        "pronunciation_dictionaries": [theirs]})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["param"] == "pronunciation_dictionaries"


def test_a_speech_session_applies_it_to_every_sentence(graph):
    pdict = graph.dictionary()
    with graph.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json({"type": "session", "voice": "alloy", "response_format": "pcm",
                      "pronunciation_dictionaries": [pdict]})
        ws.send_json({"type": "text", "text": "Qwen one. Qwen two."})
        ws.send_json({"type": "close"})
        events = []
        while not events or events[-1]["type"] not in ("done", "error"):
            message = ws.receive()
            if message.get("text"):  # the events; the audio comes in binary frames
                events.append(json.loads(message["text"]))
    assert events[-1]["type"] == "done", events[-1]
    assert [t.strip() for t in graph.models["CustomVoice"].texts[-2:]] == ["chwen one.",
                                                                           "chwen two."]


def test_the_handle_api_applies_the_handle_tenants_dictionaries(graph):
    handle_tenant = graph.platform.tenants.get_or_create(graph.platform.args.handle_tenant)
    pdict = graph.platform.dictionaries.create(handle_tenant.id, "b", []).id
    graph.platform.dictionaries.add_entries(handle_tenant.id, pdict, [
        _entry(ENTRY)])

    async def call():
        inp = await graph.selector.typed(CustomVoiceInput(
            text=TEXT, speaker="Ryan", pronunciation_dictionaries=(pdict,)))
        await graph.svc.synthesize(inp, "handle-1")
        events = [e async for e in handle_session(graph.svc, SessionSettings(
            voice="Ryan", pronunciation_dictionaries=(pdict,)), ["Qwen again."],
            graph.selector)]
        return events

    asyncio.run(call())
    assert graph.models["CustomVoice"].texts[-2:] == [SPOKEN, "chwen again."]


def _entry(entry: dict):
    from serve_app.platform.pronunciation import EntryData

    return EntryData(**entry)


# ------------------------------------------------------------------------- tenants, CRUD
def test_another_tenants_dictionary_is_a_404_to_read_and_to_use(graph):
    other = graph.platform.tenants.create("other")
    theirs = graph.platform.dictionaries.create(other.id, "secret", [_entry(ENTRY)]).id
    for r in (graph.client.get(f"/v1/pronunciation-dictionaries/{theirs}"),
              graph.client.get(f"/v1/pronunciation-dictionaries/{theirs}/pls"),
              graph.client.post(f"/v1/pronunciation-dictionaries/{theirs}/entries",
                                json={"entries": [ENTRY]}),
              graph.client.delete(f"/v1/pronunciation-dictionaries/{theirs}"),
              _speech(graph, pronunciation_dictionaries=[theirs])):
        assert r.status_code == 404, r.text
    def error(pdict: str) -> dict:
        answer = _speech(graph, pronunciation_dictionaries=[pdict]).json()["error"]
        return {k: v for k, v in answer.items() if k != "request_id"}

    # answered exactly as a dictionary that does not exist
    assert error(theirs) == {**error("pdict_missing"),
                             "message": f"no pronunciation dictionary {theirs!r}"}
    assert graph.client.get("/v1/pronunciation-dictionaries").json()["data"] == []
    assert graph.platform.dictionaries.get(other.id, theirs).version == 1


def test_entries_are_replaced_added_and_removed_with_a_new_version_each(graph):
    c = graph.client
    pdict = graph.dictionary()
    base = f"/v1/pronunciation-dictionaries/{pdict}"
    r = c.post(f"{base}/entries", json={"entries": [{"grapheme": "SQL", "alias": "sequel",
                                                     "case_sensitive": True}]})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["entry_count"] == 2
    r = c.post(f"{base}/entries/remove", json={"graphemes": ["qwen"]})
    assert r.json()["version"] == 3 and [e["grapheme"] for e in r.json()["entries"]] == ["SQL"]
    r = c.put(f"{base}/entries", json={"entries": [ENTRY]})
    assert r.json()["version"] == 4
    assert c.get(base).json()["entries"] == [{**ENTRY, "case_sensitive": False,
                                              "word_boundaries": True}]
    # a request names the id and gets the current version
    assert _speech(graph, pronunciation_dictionaries=[pdict]).status_code == 200
    assert graph.last_text() == SPOKEN
    r = c.put(f"{base}/entries", json={"entries": [{"grapheme": "Qwen", "alias": "kwen"}]})
    assert _speech(graph, pronunciation_dictionaries=[pdict], seed=1).status_code == 200
    assert graph.last_text() == "kwen reads this."
    assert c.delete(base).json() == {"id": pdict, "object": "pronunciation_dictionary",
                                     "deleted": True}
    assert c.get(base).status_code == 404


def test_up_to_three_dictionaries_apply_in_order(graph):
    first = graph.dictionary([{"grapheme": "Qwen", "alias": "first"}])
    second = graph.dictionary([{"grapheme": "Qwen", "alias": "second"},
                               {"grapheme": "reads", "alias": "says"}])
    assert _speech(graph, pronunciation_dictionaries=[first, second]).status_code == 200
    assert graph.last_text() == "first says this."
    r = _speech(graph, pronunciation_dictionaries=[first, second, first, second])
    assert r.status_code == 422 and r.json()["error"]["param"] == "pronunciation_dictionaries"


def test_pls_files_import_export_and_a_phoneme_is_refused(graph):
    c = graph.client
    pdict = graph.dictionary([ENTRY, {"grapheme": "SQL", "alias": "sequel",
                                      "case_sensitive": True, "word_boundaries": False}])
    exported = c.get(f"/v1/pronunciation-dictionaries/{pdict}/pls")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/pls+xml"
    r = c.post("/v1/pronunciation-dictionaries/import",
               json={"name": "copy", "pls": exported.text})
    assert r.status_code == 201, r.text
    assert r.json()["entries"] == c.get(f"/v1/pronunciation-dictionaries/{pdict}").json()[
        "entries"]
    phoneme = exported.text.replace("<alias>chwen</alias>", "<phoneme>tʃwɛn</phoneme>")
    r = c.post("/v1/pronunciation-dictionaries/import", json={"name": "x", "pls": phoneme})
    assert r.status_code == 422 and "lexeme 1 ('Qwen') has a <phoneme>" in r.json()[
        "error"]["message"]


def test_limits_are_4xx_naming_the_field(graph):
    c = graph.client
    limits = graph.platform.args.pronunciation
    r = c.post("/v1/pronunciation-dictionaries", json={"name": "d", "entries": [
        ENTRY, {"grapheme": "x", "alias": "y" * (limits.max_alias_chars + 1)}]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "entries[1].alias"
    r = c.post("/v1/pronunciation-dictionaries", json={"name": "d", "entries": [
        {"grapheme": "g" * (limits.max_grapheme_chars + 1), "alias": "y"}]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "entries[0].grapheme"
    r = c.put("/v1/pronunciation-dictionaries/default", json={"dictionary_ids": ["pdict_x"]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "dictionary_ids"


def test_usage_counts_the_users_characters(graph):
    pdict = graph.dictionary([{"grapheme": "Qwen", "alias": "a much longer alias"}])
    assert _speech(graph, pronunciation_dictionaries=[pdict]).status_code == 200

    def characters() -> int:  # the usage row is written as the request settles
        return asyncio.run(graph.platform.usage_summary(graph.tenant_id)).characters

    assert wait_for(characters) == len(TEXT)


# --------------------------------------------------------------- the text's field, named
def test_an_error_about_the_text_names_the_surfaces_field(graph):
    r = _speech(graph, input="<speak>Hi <audio/></speak>", input_format="ssml")
    assert r.status_code == 422 and r.json()["error"]["param"] == "input"
    assert r.json()["error"]["message"].startswith("input is not valid SSML: <audio>")
    r = _speech(graph, input="x" * (AppArgs().ingress.max_text_chars + 1), stream_format="sse")
    assert r.status_code == 422 and r.json()["error"]["param"] == "input"
    r = graph.client.post("/api/tts/synthesize", json={  # the seed route calls it text
        "text": "<speak>Hi <audio/></speak>", "input_format": "ssml", "speaker": "Ryan"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "text"


def _session(graph: Graph, settings: dict, pieces: list[str]) -> list[dict]:
    with graph.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json({"type": "session", "voice": "alloy", "response_format": "pcm",
                      **settings})
        for piece in pieces:
            ws.send_json({"type": "text", "text": piece})
        ws.send_json({"type": "close"})
        events = []
        while not events or events[-1]["type"] not in ("done", "error"):
            message = ws.receive()
            if message.get("text"):
                events.append(json.loads(message["text"]))
    return events


def test_incremental_text_is_normalized_and_looked_up_as_it_arrives(graph):
    pdict = graph.dictionary()
    text = "Qwen costs $5 on 2026-12-04 in Qwenville."
    pieces = ["Qw", "en co", "sts $", "5 on 2026-", "12-04 in Qwen", "ville."]
    events = _session(graph, {"mode": "incremental", "pronunciation_dictionaries": [pdict]},
                      pieces)
    assert events[-1]["type"] == "done", events[-1]
    read = graph.last_text()
    assert read == "chwen costs five dollars on the fourth of december twenty twenty six in " \
                   "Qwenville.", read
    # spans and usage refer to the user's text, not the model's
    spans = [e["span"] for e in events if e["type"] == "audio.span"]
    assert spans[-1]["end"] == len(text)
    assert events[-1]["usage"]["characters"] == len(text)


def test_incremental_text_applies_the_tenants_default(graph):
    pdict = graph.dictionary()
    r = graph.client.put("/v1/pronunciation-dictionaries/default",
                         json={"dictionary_ids": [pdict]})
    assert r.status_code == 200, r.text
    events = _session(graph, {"mode": "incremental", "normalize": False},
                      ["I like Qw", "en 3 times"])
    assert events[-1]["type"] == "done", events[-1]
    assert graph.last_text() == "I like chwen 3 times"


def test_a_pls_file_over_the_limit_is_a_413_naming_pls(graph):
    limit = graph.platform.args.pronunciation.max_pls_bytes
    r = graph.client.post("/v1/pronunciation-dictionaries/import",
                          json={"name": "big", "pls": "x" * (limit + 1)})
    assert r.status_code == 413 and r.json()["error"]["param"] == "pls"
