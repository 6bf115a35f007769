"""Text that is still arriving (`TTSEngine.astream_text`): one step-loop slot fed text as an
LLM writes it, on the tiny checkpoints.

The spec:
- settled tokens: a word is read only once the next one has begun (it may still grow), and
  the settled tokens always equal the whole text's tokenization, however the text is split;
- parity: feeding the text piece by piece, the slot waiting for text between pieces, gives
  the same audio, frame for frame, as the whole text in one streaming-text request (greedy),
  for every model kind; and a whole-text streaming-text request equals stock qwen-tts run
  with `non_streaming_mode=False` (the reference backend);
- a slot waiting for text takes no step time: the other slots go on stepping without it;
- closing the input finishes the request; cancelling while it waits frees the slot;
  an input closed empty is refused; the reference backend refuses arriving text.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from deployments.engine import (
    EngineConfig,
    ModelKind,
    StreamChunking,
    SynthesisRequest,
    TextInput,
    TTSEngine,
    UnsupportedValueError,
)
from deployments.engine.text_input import SettledTokens, wrap
from deployments.engine.types import FinishReason

LONG = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the "
        "forest where nobody can find it again before the night falls.")
MEDIUM = "The quick brown fox jumps over the lazy dog, and then it runs far away."
CHUNKING = StreamChunking(first_chunk_frames=2, chunk_frames=4)


def _tone(seconds: float = 2.0, sr: int = 16_000) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), sr


def _engines(tiny_models_dir, kind: ModelKind) -> tuple[TTSEngine, TTSEngine]:
    base = {"model": str(tiny_models_dir / kind.value), "warmup": False, "device": "cpu",
            "dtype": "float32", "do_sample": False}
    ref = TTSEngine.load(EngineConfig(backend="reference", **base))
    bat = TTSEngine(ref.model, EngineConfig(backend="batched", **base), device="cpu",
                    dtype=torch.float32)
    return ref, bat


@pytest.fixture(scope="module", params=list(ModelKind), ids=lambda k: k.value)
def kind_engines(request, tiny_models_dir):
    ref, bat = _engines(tiny_models_dir, request.param)
    yield request.param, ref, bat
    bat.close()


@pytest.fixture(scope="module")
def cv(tiny_models_dir):
    ref, bat = _engines(tiny_models_dir, ModelKind.CUSTOM_VOICE)
    yield ref, bat
    bat.close()


def _request(kind: ModelKind, engine: TTSEngine, text: str = "", **kw) -> SynthesisRequest:
    if kind is ModelKind.CUSTOM_VOICE:
        return SynthesisRequest(text=text, speaker="vivian", instruct="Speak softly.", **kw)
    if kind is ModelKind.VOICE_DESIGN:
        return SynthesisRequest(text=text, instruct="A calm low voice.", language="english", **kw)
    prompt = engine.build_voice_prompt(*_tone(), ref_text="Reference words here.")
    return SynthesisRequest(text=text, voice_prompt=prompt, **kw)


def _words(text: str) -> list[str]:
    """The text as an LLM would send it: each word with its leading space."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


async def _wait_idle(engine: TTSEngine, task: asyncio.Task) -> None:
    while not (engine.loop.idle or task.done()):
        await asyncio.sleep(0.002)


async def _feed(engine: TTSEngine, request: SynthesisRequest, pieces: list[str], *,
                wait: bool = True, waits: list[int] | None = None):
    """Stream `request` with its text sent piece by piece; between pieces (wait=True) the
    loop runs until the slot waits for text. Returns the chunks."""
    text = TextInput()
    stream = engine.astream_text(request, text, CHUNKING)
    chunks = []

    async def consume():
        async for chunk in stream:
            chunks.append(chunk)

    task = asyncio.create_task(consume())
    for piece in pieces:
        text.append(piece)
        if wait:
            await _wait_idle(engine, task)
            if waits is not None:
                waits.append(engine.loop.loop_stats.waiting_for_text)
    text.close()
    await asyncio.wait_for(task, 120)
    return chunks


async def _whole(engine: TTSEngine, request: SynthesisRequest):
    return [c async for c in engine.astream(request, CHUNKING)]


def _audio(chunks) -> np.ndarray:
    return np.concatenate([c.audio for c in chunks])


# ------------------------------------------------------------------ settled tokens
SPLIT_TEXTS = [LONG, "Numbers 3.14 and 1,000,000 — then   three spaces.\nA new line!",
               "其实我真的有发现，我是一个特别善于观察别人情绪的人。你呢？", "Hello"]


@pytest.mark.parametrize("text", SPLIT_TEXTS, ids=["english", "numbers", "chinese", "one"])
def test_settled_tokens_equal_the_whole_texts_however_the_text_is_split(cv, text):
    tokenizer = cv[0].model.processor.tokenizer
    whole = tokenizer(wrap(text), add_special_tokens=False)["input_ids"][3:-5]
    rng = np.random.default_rng(0)
    for _ in range(5):
        cuts = sorted(set(rng.integers(1, max(len(text), 2), size=8).tolist()))
        settled, so_far = SettledTokens(tokenizer), ""
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            so_far += text[a:b]
            settled.update(so_far)
            assert settled.ids == whole[:len(settled.ids)]  # never a token it must take back
        assert settled.close(text)  # nothing differed
        assert settled.ids == whole
        assert settled.read_chars(len(whole)) == len(text)


def test_a_word_is_read_only_once_the_next_one_has_begun(cv):
    tokenizer = cv[0].model.processor.tokenizer
    settled = SettledTokens(tokenizer)
    settled.update("Hello wor")
    assert tokenizer.decode(settled.ids) == "Hello"
    settled.update("Hello world, how")
    assert tokenizer.decode(settled.ids) == "Hello world,"
    settled.close("Hello world, how")
    assert tokenizer.decode(settled.ids) == "Hello world, how"


# ------------------------------------------------------------------ parity
def test_whole_text_streaming_text_request_equals_stock_qwen_tts(kind_engines):
    kind, ref, bat = kind_engines
    req = _request(kind, ref, LONG, streaming_text=True, max_new_tokens=31, min_frames=30)
    got = bat.synthesize([req])[0]
    want = ref.synthesize([req])[0]
    assert got.frames == want.frames == 30
    np.testing.assert_allclose(got.audio, want.audio, atol=1e-6, rtol=0)
    # and streaming-text mode really is another mode than the kind's default
    default = bat.synthesize([_request(kind, ref, LONG, max_new_tokens=31, min_frames=30)])[0]
    if kind is not ModelKind.BASE:  # Base reads streaming text by default
        assert not np.allclose(default.audio, got.audio)


def test_text_fed_word_by_word_equals_the_whole_text_at_once(kind_engines):
    kind, ref, bat = kind_engines
    for text, frames in ((LONG, 60), (MEDIUM, 40)):  # cut short by its cap / read to the end
        req = _request(kind, ref, streaming_text=True, max_new_tokens=frames + 1,
                       min_frames=frames)
        waits: list[int] = []
        fed = asyncio.run(_feed(bat, req, _words(text), waits=waits))
        whole = asyncio.run(_whole(bat, _request(kind, ref, text, streaming_text=True,
                                                 max_new_tokens=frames + 1, min_frames=frames)))
        assert sum(c.frames for c in fed) == sum(c.frames for c in whole) == frames
        np.testing.assert_allclose(_audio(fed), _audio(whole), atol=1e-6, rtol=0)
        assert 1 in waits  # the slot really waited for text between words
        final = fed[-1]
        assert final.final
        marks = [c.text_chars for c in fed]
        assert marks == sorted(marks) and 0 < marks[0]  # what it had read, in order
        if whole[-1].input_tokens < frames:  # it read all the text, then waited for the close
            assert final.text_chars == len(text)
            assert final.input_tokens == whole[-1].input_tokens
        else:  # the cap ended it while text was still arriving
            assert final.text_chars < len(text)


def test_text_sent_in_odd_pieces_equals_the_whole_text(cv):
    ref, bat = cv
    text = "Numbers 3.14 and 1,000,000 — then three spaces. A new line, and more words here."
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    req = dict(speaker="ryan", streaming_text=True, max_new_tokens=41, min_frames=40)
    fed = asyncio.run(_feed(bat, SynthesisRequest(text="", **req), pieces))
    whole = asyncio.run(_whole(bat, SynthesisRequest(text=text, **req)))
    np.testing.assert_allclose(_audio(fed), _audio(whole), atol=1e-6, rtol=0)


def test_text_that_all_arrives_before_admission_equals_the_whole_text(cv):
    ref, bat = cv
    req = dict(speaker="ryan", streaming_text=True, max_new_tokens=31, min_frames=30)
    fed = asyncio.run(_feed(bat, SynthesisRequest(text="", **req), [LONG], wait=False))
    whole = asyncio.run(_whole(bat, SynthesisRequest(text=LONG, **req)))
    np.testing.assert_allclose(_audio(fed), _audio(whole), atol=1e-6, rtol=0)


# ------------------------------------------------------------------ scheduling
def test_a_slot_waiting_for_text_takes_no_step_time_from_the_others(cv):
    ref, bat = cv
    loop = bat.loop
    sizes: list[int] = []
    other = SynthesisRequest(text=LONG, speaker="eric", max_new_tokens=41, min_frames=40)
    alone = bat.synthesize([other])[0]

    async def run():
        # all but "and" settles: a few frames (the first chunk), then the slot waits for more
        text = TextInput("Hello there my good old friend and")
        stream = bat.astream_text(SynthesisRequest(text="", speaker="vivian", min_frames=30,
                                                   max_new_tokens=200), text, CHUNKING)
        first = await asyncio.wait_for(stream.__anext__(), 60)
        while loop.loop_stats.waiting_for_text != 1:
            await asyncio.sleep(0.002)
        frames_before = stream.frames
        orig = loop.observer.on_step
        loop.observer.on_step = lambda n, s: sizes.append(n)
        try:
            result = await bat.asynthesize(other)
        finally:
            loop.observer.on_step = orig
        frames_after = stream.frames
        text.append(" you.")
        text.close()
        rest = [c async for c in stream]
        return first, frames_before, frames_after, result, rest

    first, before, after, result, rest = asyncio.run(run())
    assert sizes and set(sizes) == {1}  # every step ran the other request alone
    assert before == after  # the waiting slot made no frame meanwhile
    np.testing.assert_allclose(result.audio, alone.audio, atol=1e-6, rtol=0)
    assert rest[-1].final and rest[-1].text_chars == len("Hello there my good old friend and you.")


def test_cancelling_a_slot_that_waits_for_text_frees_it(cv):
    ref, bat = cv
    loop = bat.loop

    async def run():
        text = TextInput("One two three four five six seven")
        stream = bat.astream_text(SynthesisRequest(text="", speaker="vivian"), text, CHUNKING)
        await asyncio.wait_for(stream.__anext__(), 60)
        while loop.loop_stats.waiting_for_text != 1:
            await asyncio.sleep(0.002)
        stream.cancel()
        deadline = time.monotonic() + 30
        while loop.loop_stats.active and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return loop.loop_stats.active

    assert asyncio.run(asyncio.wait_for(run(), 60)) == 0


def test_an_input_closed_empty_is_refused(cv):
    ref, bat = cv

    async def run():
        text = TextInput("   ")
        stream = bat.astream_text(SynthesisRequest(text="", speaker="vivian"), text)
        text.close()
        return [c async for c in stream]

    with pytest.raises(UnsupportedValueError, match="text"):
        asyncio.run(run())


def test_a_request_that_ends_before_its_text_reports_what_it_read(cv):
    ref, bat = cv

    async def run():
        text = TextInput(LONG)  # never closed: the frame cap ends it
        stream = bat.astream_text(SynthesisRequest(text="", speaker="vivian", max_new_tokens=6),
                                  text, CHUNKING)
        return [c async for c in stream]

    chunks = asyncio.run(run())
    final = chunks[-1]
    assert final.final and final.finish_reason is FinishReason.LENGTH
    assert 0 < final.text_chars < len(LONG)


def test_the_reference_backend_refuses_text_that_is_still_arriving(cv):
    ref, _ = cv

    async def run():
        ref.astream_text(SynthesisRequest(text="", speaker="vivian"), TextInput())

    with pytest.raises(UnsupportedValueError, match="batched"):
        asyncio.run(run())


def test_arriving_text_cannot_be_read_all_at_once(cv):
    _, bat = cv

    async def run():
        bat.astream_text(SynthesisRequest(text="", speaker="vivian", streaming_text=False),
                         TextInput())

    with pytest.raises(UnsupportedValueError, match="streaming-text mode"):
        asyncio.run(run())

