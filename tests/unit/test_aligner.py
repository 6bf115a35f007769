"""The forced-aligner deployment's model (deployments/aligner_server.py): qwen-asr's own
Qwen3ForcedAligner on the tiny random-weight checkpoint built with its classes, under the
transformers version qwen-tts pins (qwen-asr pins a later patch release). It answers one
(start, end) per word sent; its random times come out of the service repaired into words
of the user's text, in order, inside the audio."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from deployments.aligner.tiny import CLASSES, THINKER_TYPE, ensure_tiny_aligner
from deployments.aligner_server import Aligner
from deployments.args import TINY_ALIGNER, AlignerArgs
from deployments.engine.types import ModelInfo, ModelKind
from serve_app.app.args import AppArgs
from serve_app.protocol.speech import CustomVoiceInput
from serve_app.synthesis.model_call import CallBuilder
from serve_app.synthesis.word_timing import WordTimer
from tests.fake_handles import FakeHandle
from tests.unit.test_word_timestamps import assert_well_formed

RATE = 24_000
INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian",), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=RATE, device="cpu", dtype="float32",
    model_size="tiny",
)


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    return Aligner(AlignerArgs(model=TINY_ALIGNER, device="cpu", num_threads=1))


def test_the_tiny_checkpoint_is_a_forced_aligner_of_the_real_layout():
    config = json.loads((ensure_tiny_aligner() / "config.json").read_text())
    assert config["model_type"] == "qwen3_asr"
    assert config["thinker_config"]["model_type"] == THINKER_TYPE
    assert config["thinker_config"]["classify_num"] == CLASSES
    assert config["timestamp_segment_time"] == 80.0


def test_it_answers_one_time_pair_per_word(aligner):
    audio = np.random.default_rng(0).standard_normal(RATE * 2).astype(np.float32) * 0.1
    words = ["Hello", "world", "twelve", "你", "好", "it's"]
    times = aligner.align(audio, RATE, words)
    assert len(times) == len(words)
    assert all(isinstance(s, float) and isinstance(e, float) for s, e in times)


def test_its_random_times_come_out_as_well_formed_words(aligner):
    text = "It costs $1,299.99, said Dr. Smith. 你好世界！"
    audio = np.random.default_rng(1).standard_normal(RATE * 3).astype(np.float32) * 0.1

    class Deployment:  # the deployment's method, over the same model
        async def align(self, audio, sample_rate, words):
            return aligner.align(audio, sample_rate, words)

    async def run():
        async def info(_):
            return INFO
        call = await CallBuilder(AppArgs(), info).prepare(
            CustomVoiceInput(text=text, speaker="vivian"))
        return await WordTimer(FakeHandle(Deployment())).timings(call, text, audio, RATE)

    timings = asyncio.run(run())
    assert timings.source == "aligner"
    assert_well_formed(timings, text, 3.0)
