"""Which model and voice a request means is decided in one place, the voice selector, with one
wording per error, whichever surface asks (no Ray: the service over fake model handles)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from deployments.engine.types import ModelInfo, ModelKind, VoicePrompt
from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN, AppArgs
from serve_app.edge.api_errors import ApiError
from serve_app.platform.jobs.store import JobRequest
from serve_app.protocol.speech import (
    CustomVoiceInput,
    SavedVoiceInput,
    VoiceCloneInput,
    VoiceDesignInput,
    VoiceRef,
)
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import (
    DESCRIPTION_FIELDS,
    OPENAI_FIELDS,
    SPEAKER_FIELDS,
    Reference,
    VoiceChoice,
    VoiceRequest,
    VoiceSelector,
)

CUSTOM_INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian", "ryan"), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=24000, device="cpu", dtype="float32",
    model_size="tiny",
)
INFOS = {CUSTOM_VOICE: CUSTOM_INFO,
         VOICE_DESIGN: dataclasses.replace(CUSTOM_INFO, kind=ModelKind.VOICE_DESIGN, speakers=()),
         VOICE_CLONE: dataclasses.replace(CUSTOM_INFO, kind=ModelKind.BASE, speakers=())}
SAVED = VoiceRef("voice_abc", VoicePrompt(np.zeros(8, np.float32), x_vector_only_mode=True))


class _Info:
    def __init__(self, info: ModelInfo):
        self._info = info

    def remote(self):
        async def answer():
            return self._info

        return answer()


class _Model:
    def __init__(self, info: ModelInfo):
        self.info = _Info(info)


class SavedVoicesOf:
    """A tenant with one saved voice, `narrator` (id voice_abc)."""

    async def lookup(self, name: str, caller=None) -> VoiceRef | None:
        return SAVED if name in ("narrator", "voice_abc") else None

    async def require(self, voice_id: str, caller) -> VoiceRef:
        return SAVED


def selector(*deployed: str, max_instruction_chars: int = 1000) -> VoiceSelector:
    args = AppArgs.model_validate({"ingress": {"max_instruction_chars": max_instruction_chars}})
    models = {name: _Model(INFOS[name]) for name in deployed or INFOS}
    return VoiceSelector(SynthesisService(args, models, audio=None), SavedVoicesOf())


def select(req: VoiceRequest, sel: VoiceSelector | None = None) -> VoiceChoice:
    return asyncio.run((sel or selector()).select(req))


def refused(req: VoiceRequest, sel: VoiceSelector | None = None) -> ApiError:
    with pytest.raises(ApiError) as raised:
        select(req, sel)
    return raised.value


@pytest.mark.parametrize("model", ["tts-1", "CustomVoice", "VoiceClone", None])
def test_a_saved_voice_speaks_with_voice_clone_whatever_model_is_named(model):
    choice = select(VoiceRequest(model=model, voice="narrator"))
    assert choice == VoiceChoice(VOICE_CLONE, saved=SAVED)
    inp = choice.input("Hello.", seed=3)
    assert isinstance(inp, SavedVoiceInput) and inp.voice == SAVED and inp.seed == 3


def test_voice_design_takes_no_voice_even_a_saved_one():
    choice = select(VoiceRequest(model="VoiceDesign", voice="narrator", instructions="A calm voice."))
    assert choice == VoiceChoice(VOICE_DESIGN, description="A calm voice.")


@pytest.mark.parametrize("fields", [OPENAI_FIELDS, DESCRIPTION_FIELDS, SPEAKER_FIELDS])
def test_voice_clone_without_a_saved_voice_is_one_422_naming_the_voice_field(fields):
    error = refused(VoiceRequest(model="VoiceClone", voice="alloy", fields=fields))
    assert (error.status, error.code, error.param) == (422, "unsupported_value", fields.voice)
    assert error.message == (
        f"VoiceClone speaks a saved voice: pass its id or name as {fields.voice} (create one "
        "with POST /v1/voices), or clone from reference audio with POST /v1/audio/clone")


@pytest.mark.parametrize(("fields", "param"), [(OPENAI_FIELDS, "instructions"),
                                               (DESCRIPTION_FIELDS, "description")])
def test_voice_design_needs_a_description_named_as_the_surface_names_it(fields, param):
    error = refused(VoiceRequest(model="VoiceDesign", voice="alloy", instructions="  ",
                                 description="  " if param == "description" else None,
                                 fields=fields))
    assert (error.status, error.param) == (422, param)
    assert error.message == f"VoiceDesign needs {param}: the voice to create, described in words"


def test_openai_voice_names_stand_for_presets_only_where_the_surface_takes_them():
    assert select(VoiceRequest(model="tts-1", voice="alloy")).speaker == "vivian"
    error = refused(VoiceRequest(voice="alloy", fields=SPEAKER_FIELDS))  # the seed's speaker
    assert (error.param, error.message) == ("speaker", "Unknown speaker 'alloy'. Allowed: "
                                                       "Vivian, Ryan.")


def test_instructions_and_descriptions_over_the_limit_name_the_field_the_client_sent():
    sel = selector(max_instruction_chars=10)
    long = "a warm slow voice"
    for req, param in ((VoiceRequest(model="tts-1", voice="ryan", instructions=long),
                        "instructions"),
                       (VoiceRequest(voice="ryan", instructions=long, fields=SPEAKER_FIELDS),
                        "instruct"),
                       (VoiceRequest(deployment=VOICE_DESIGN, description=long,
                                     fields=DESCRIPTION_FIELDS), "description")):
        error = refused(req, sel)
        assert (error.param, error.message) == (param, f"{param} is 17 characters long; at "
                                                       "most 10 are allowed.")


def test_an_unknown_language_is_refused_for_the_chosen_model():
    error = refused(VoiceRequest(model="tts-1", voice="ryan", language="klingon"))
    assert error.param == "language" and error.message.startswith("Unsupported language")


def test_a_model_that_is_not_deployed_is_named_as_such():
    error = refused(VoiceRequest(model="VoiceDesign", instructions="Calm."),
                    selector(CUSTOM_VOICE))
    assert (error.param, error.message) == (
        "model", "Unknown model 'VoiceDesign'. Allowed: CustomVoice, tts-1, tts-1-hd, "
                 "gpt-4o-mini-tts.")


def test_reference_audio_is_voice_clone_from_that_audio():
    reference = Reference(b"RIFF....", "Hello there.", False)
    choice = select(VoiceRequest(deployment=VOICE_CLONE, reference=reference))
    inp = choice.input("Hi.")
    assert isinstance(inp, VoiceCloneInput)
    assert (inp.reference_audio, inp.ref_text, inp.x_vector_only) == (b"RIFF....",
                                                                       "Hello there.", False)


def test_a_job_speaks_the_voice_chosen_at_submission():
    for req, saved in ((VoiceRequest(model="tts-1", voice="alloy", instructions="Slowly."), None),
                       (VoiceRequest(model="VoiceDesign", description="Calm.",
                                     fields=DESCRIPTION_FIELDS), None),
                       (VoiceRequest(model="tts-1", voice="narrator"), SAVED)):
        choice = select(req)
        job = JobRequest(model=choice.deployment, text="Long text.",
                         params=choice.job_params(language="en", seed=7, max_new_tokens=None))
        again = VoiceChoice.of_job(job, saved)
        assert again.input("A segment.", seed=7) == choice.input("A segment.", seed=7)


def test_the_handle_api_goes_through_the_same_rules():
    sel = selector()
    saved = asyncio.run(sel.typed(CustomVoiceInput(text="Hi.", speaker="narrator", seed=5)))
    assert isinstance(saved, SavedVoiceInput) and saved.voice == SAVED and saved.seed == 5
    preset = asyncio.run(sel.typed(CustomVoiceInput(text="Hi.", speaker="Ryan")))
    assert isinstance(preset, CustomVoiceInput) and preset.speaker == "ryan"
    with pytest.raises(ApiError) as raised:
        asyncio.run(sel.typed(VoiceDesignInput(text="Hi.", description="   ")))
    assert raised.value.param == "description"
