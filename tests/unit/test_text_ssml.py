"""The SSML subset (serve_app.text.ssml and the front end) and calls in parts
(serve_app.synthesis.model_call): what the model reads, the silence a break adds (whole and
streamed), what is refused and where, and that entity tricks are refused fast."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest

from deployments.engine.types import AudioChunk, ModelInfo, ModelKind, SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.speech import CustomVoiceInput
from serve_app.synthesis.model_call import CallBuilder
from serve_app.text import ssml
from serve_app.text.front_end import TextFrontEnd

RATE = 24_000
INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian",), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=RATE, device="cpu", dtype="float32",
    model_size="tiny",
)


def script(document: str, language: str = "english", **kw):
    return asyncio.run(TextFrontEnd().script(
        document, language, input_format="ssml",
        resolve_language=lambda code: {"en": "english", "zh": "chinese"}[code], **kw))


def refusal(document: str) -> str:
    with pytest.raises(ApiError) as caught:
        script(document)
    assert caught.value.status == 422 and caught.value.param == "text"
    return caught.value.message


# --------------------------------------------------------------------------- the model's text
def test_say_as_and_sub_change_what_the_model_reads():
    s = script('<speak>Call <say-as interpret-as="telephone">555-1234</say-as> about '
               '<sub alias="World Wide Web">WWW</sub>, <say-as interpret-as="characters">'
               'abc</say-as>, the <say-as interpret-as="ordinal">3</say-as> time, '
               '<say-as interpret-as="cardinal">1,234</say-as> times, on '
               '<say-as interpret-as="date" format="mdy">12/04/2026</say-as> at '
               '<say-as interpret-as="time">13:45</say-as>.</speak>')
    assert [p.text for p in s.parts] == [
        "Call five five five, one two three four about World Wide Web, A B C, the third "
        "time, one thousand two hundred and thirty four times, on the fourth of december "
        "twenty twenty six at thirteen forty five."]


def test_chinese_say_as_reads_in_chinese():
    s = script('<speak>电话<say-as interpret-as="telephone">110</say-as>，第'
               '<say-as interpret-as="cardinal">3</say-as>章</speak>', "chinese")
    assert s.parts[0].text == "电话一一零，第三章"


def test_breaks_split_the_text_into_parts_with_their_pauses():
    s = script('<speak><break time="250ms"/>One.<break time="1.5s"/>Two.'
               '<break strength="strong"/><p>Three.</p></speak>')
    assert s.pause_before_s == 0.25
    assert [(p.text.strip(), p.pause_after_s) for p in s.parts] == [
        ("One.", 1.5), ("Two.", ssml.BREAK_STRENGTHS["strong"]), ("Three.", 0.0)]


def test_lang_and_prosody_make_parts_of_their_own():
    s = script('<speak>Hello <lang xml:lang="zh-CN">第3章</lang><prosody rate="slow" '
               'pitch="+2st">slow</prosody></speak>')
    assert [(p.text.strip(), p.language) for p in s.parts] == [
        ("Hello", None), ("第三章", "chinese"), ("slow", None)]
    assert s.parts[2].speed == 0.75 and s.parts[2].pitch == pytest.approx(2 ** (2 / 12))


def test_normalize_false_leaves_ssml_text_as_written():
    assert script("<speak>I have 3 cats.</speak>", normalize=False).parts[0].text == \
        "I have 3 cats."


def test_offsets_point_into_the_document():
    doc = '<speak>It costs $5 <sub alias="okay">OK</sub>.</speak>'
    part = script(doc).parts[0]
    i = part.text.index("five")
    assert doc[slice(*part.offsets.source_span(i, i + len("five dollars")))].strip() == "$5"
    i = part.text.index("okay")
    assert doc[slice(*part.offsets.source_span(i, i + 4))] == '<sub alias="okay">OK</sub>'


def test_ssml_bills_the_documents_text_not_its_markup():
    s = script('<speak>Hi <break time="1s"/><sub alias="World Wide Web">WWW</sub></speak>')
    assert s.characters == len("Hi ") + len("WWW")


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(("document", "names", "offset"), [
    ('<speak>a <audio src="x.wav"/></speak>', "<audio> is not supported", 9),
    ('<speak>a <break time="20s"/></speak>', "<break> time='20s' is longer", 9),
    ('<speak>a <break time="soon"/></speak>', "<break> time='soon' is not a duration", 9),
    ('<speak><say-as interpret-as="spell-out">x</say-as></speak>',
     "interpret-as='spell-out' is not supported", 7),
    ('<speak><sub>x</sub></speak>', "<sub> needs alias", 7),
    ('<speak><prosody volume="loud">x</prosody></speak>', "does not take the attribute volume", 7),
    ('<speak><prosody rate="900%">x</prosody></speak>', "rate comes to 9.00x", 7),
    ('<speak><lang>x</lang></speak>', "<lang> needs xml:lang", 7),
    ('<speak><say-as interpret-as="cardinal">many</say-as></speak>', "needs a whole number", 7),
    ('<speak>a <s>b</speak>', "not well-formed", 15),
    ("just text", "not well-formed", 0),
    ("<p>no speak</p>", "root element must be <speak>", 0),
    ('<speak><lang xml:lang="tlh">x</lang></speak>', "xml:lang='tlh'", 28),
])
def test_refused_markup_names_the_element_and_its_offset(document, names, offset):
    message = refusal(document)
    assert names in message and f"at character {offset}" in message


def test_entity_expansion_bomb_is_refused_fast():
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY l0 "lol">{lol}]><speak>&l9;</speak>'
    started = time.perf_counter()
    assert "must not declare a DTD or entities" in refusal(bomb)
    assert time.perf_counter() - started < 0.5


def test_external_entities_are_never_fetched(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    for doc in (f'<!DOCTYPE speak [<!ENTITY x SYSTEM "file://{secret}">]><speak>&x;</speak>',
                f'<!DOCTYPE speak SYSTEM "file://{secret}"><speak>hi</speak>'):
        message = refusal(doc)
        assert "top secret" not in message and "DTD" in message


# ------------------------------------------------------------------- calls in parts (no Ray)
class _Remote:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args):
        return self._fn(*args)


class FakeModel:
    """A model handle that records the requests it is sent and answers 0.5 s of a tone each
    (whole or in two chunks)."""

    def __init__(self):
        self.requests = []
        self.synthesize = _Remote(self._synthesize)
        self.stream = _Remote(self._stream)

    def options(self, stream: bool = False):
        return self

    @staticmethod
    def _tone() -> np.ndarray:
        return np.full(RATE // 2, 0.25, dtype=np.float32)

    def _synthesize(self, request):
        self.requests.append(request)

        async def answer():
            return SynthesisResult(self._tone(), RATE, 6)
        return answer()

    def _stream(self, request):
        self.requests.append(request)
        tone = self._tone()

        async def chunks():
            yield AudioChunk(tone[:RATE // 4], RATE, 0, 3)
            yield AudioChunk(tone[RATE // 4:], RATE, 1, 3, final=True, total_frames=6,
                             input_tokens=4)
        return chunks()


async def _info(name: str) -> ModelInfo:
    return INFO


def call_for(text: str, **kw):
    builder = CallBuilder(AppArgs(), _info)
    return asyncio.run(builder.prepare(CustomVoiceInput(text=text, speaker="vivian",
                                                        language="english", **kw)))


DOC = '<speak>One.<break time="1s"/>Two.<break time="500ms"/></speak>'


def test_a_break_is_its_length_of_silence_in_the_whole_audio():
    call = call_for(DOC, input_format="ssml")
    model = FakeModel()
    result = asyncio.run(_whole(call, model))
    assert [r.text for r in model.requests] == ["One.", "Two."]
    assert len(result.audio) == RATE // 2 + RATE + RATE // 2 + RATE // 2
    silence = result.audio[RATE // 2:RATE // 2 + RATE]
    assert not silence.any() and result.audio[:RATE // 2].all()


async def _whole(call, model):
    return await (await call.invoke(model, None, stream=False))


async def _streamed(call, model):
    source = await call.invoke(model, None, stream=True)
    return [chunk async for chunk in source]


def test_a_break_is_its_length_of_silence_in_the_stream_too():
    call = call_for(DOC, input_format="ssml")
    chunks = asyncio.run(_streamed(call, FakeModel()))
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == RATE // 2 + RATE + RATE // 2 + RATE // 2
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
    assert chunks[-1].total_frames == 12 and chunks[-1].input_tokens == 8
    whole = asyncio.run(_whole(call, FakeModel()))
    assert np.array_equal(audio, whole.audio)


def test_prosody_is_refused_while_streaming():
    call = call_for('<speak><prosody rate="fast">Quick.</prosody></speak>',
                    input_format="ssml")
    with pytest.raises(ApiError) as caught:
        asyncio.run(_streamed(call, FakeModel()))
    assert caught.value.status == 400 and caught.value.code == "unsupported_while_streaming"


def test_normalized_request_reads_words_and_bills_the_users_characters():
    text = "It costs $5 on 2026-12-04."
    call = call_for(text)
    assert call.request.text == "It costs five dollars on the fourth of december twenty " \
        "twenty six."
    assert call.characters == len(text) and not call.parts


def test_normalize_false_sends_the_text_as_it_is():
    call = call_for("It costs $5.", normalize=False)
    assert call.request.text == "It costs $5." and call.characters == len("It costs $5.")


def test_usage_of_ssml_counts_the_documents_text():
    call = call_for(DOC, input_format="ssml")
    assert call.characters == len("One.Two.")
    assert dataclasses.replace(call, source_characters=None).characters == len("One.")
