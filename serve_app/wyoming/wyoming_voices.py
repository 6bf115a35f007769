"""What Wyoming's `describe` lists, and the voice a `synthesize` names.

The list is the one source of what a Wyoming client may name: the CustomVoice presets, each
with its native language first and then every language the checkpoint speaks (a preset
speaks them all; Home Assistant offers a voice for the languages it lists), and the acting
tenant's saved voices (spoken by VoiceClone from their stored prompt), listed by name, or by
id where the name is already a preset's. A name outside the list is an error that lists the
allowed names; no voice at all is `wyoming.default_voice`.
"""

from __future__ import annotations

from dataclasses import dataclass

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice
from wyoming.tts import SynthesizeVoice

import serve_app
from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE
from serve_app.edge.api_errors import invalid
from serve_app.platform.keys import Principal
from serve_app.platform.service import Platform
from serve_app.synthesis import catalog
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.wyoming.wyoming_args import WyomingArgs

PROGRAM = "qwen3-tts-serve"
ATTRIBUTION = Attribution(name="Qwen team, Alibaba Cloud (Qwen3-TTS)",
                          url="https://github.com/QwenLM/Qwen3-TTS")


@dataclass(frozen=True)
class WyomingVoice:
    name: str  # what a client sends as voice.name
    voice: str  # what the voice selector is given: a preset's name or a saved voice's id
    languages: tuple[str, ...]
    description: str
    model: str  # the deployment that speaks it (whose languages a synthesize may ask for)


@dataclass(frozen=True)
class VoiceChoice:
    """A synthesize's voice, as a speech session's `voice` and `language`."""

    voice: str
    language: str


def _first(language: str | None, codes: list[str]) -> tuple[str, ...]:
    ordered = [language] if language and language != "auto" else []
    return tuple(ordered + [c for c in codes if c not in ordered])


def _language(value: str | None) -> str:
    """A Wyoming language ("en", "en_US", "en-GB") as the catalog's code ("en")."""
    if not value or not value.strip():
        return "auto"
    return value.strip().replace("_", "-").split("-")[0].lower()


class WyomingVoices:
    def __init__(self, service: SynthesisService, platform: Platform, args: WyomingArgs):
        self._service = service
        self._platform = platform
        self._args = args

    async def listing(self, principal: Principal) -> list[WyomingVoice]:
        """The presets, then the tenant's saved voices (module docstring)."""
        svc = self._service
        voices: list[WyomingVoice] = []
        if CUSTOM_VOICE in svc.deployed_models:
            info = await svc.model_info(CUSTOM_VOICE)
            codes = catalog.language_codes(info)
            for entry in catalog.voice_entries(info):
                voices.append(WyomingVoice(entry.name, entry.name, _first(entry.language, codes),
                                           entry.description or "preset speaker", CUSTOM_VOICE))
        if VOICE_CLONE in svc.deployed_models:
            codes = catalog.language_codes(await svc.model_info(VOICE_CLONE))
            taken = {v.name.lower() for v in voices} | set(catalog.OPENAI_VOICES)
            for saved in await self._platform.list_voices(principal):
                name = saved.id if saved.name.lower() in taken else saved.name
                taken.add(name.lower())
                language = catalog.language_code(saved.language) if saved.language else None
                voices.append(WyomingVoice(name, saved.id, _first(language, codes),
                                           f"saved voice ({saved.kind})", VOICE_CLONE))
        return voices

    async def info(self, principal: Principal) -> Info:
        """`describe`'s answer: one TTS program with the voices, streaming text supported."""
        voices = [TtsVoice(name=v.name, description=v.description, attribution=ATTRIBUTION,
                           installed=True, version=None, languages=list(v.languages))
                  for v in await self.listing(principal)]
        program = TtsProgram(name=PROGRAM, description="Qwen3-TTS on Ray Serve",
                             attribution=ATTRIBUTION, installed=True,
                             version=serve_app.__version__, voices=voices,
                             supports_synthesize_streaming=True)
        return Info(tts=[program])

    async def choose(self, voice: SynthesizeVoice | None, principal: Principal) -> VoiceChoice:
        """The listed voice a synthesize names (or the default voice), and its language;
        422 naming `voice.name` / `voice.speaker` / `voice.language` otherwise."""
        if voice is not None and voice.speaker:
            raise invalid("voice.speaker", "these voices have no speakers: send voice.name "
                          "only, one of the names that describe lists")
        named = voice.name if voice is not None and voice.name else None
        wanted = named or self._args.default_voice
        listed = await self.listing(principal)
        found = next((v for v in listed if v.name.lower() == wanted.strip().lower()), None)
        if found is None:
            field = "voice.name" if named else "wyoming.default_voice"
            raise invalid(field, f"Unknown voice {wanted!r} ({field}). Allowed: "
                          f"{', '.join(v.name for v in listed)}.")
        # Home Assistant sends a language only with no voice name (SynthesizeVoice.to_dict)
        language = _language(voice.language if voice is not None and not named else None)
        if language != "auto":  # one the voice's model speaks, else 422 naming voice.language
            catalog.resolve_language(language, await self._service.model_info(found.model),
                                     "voice.language")
        return VoiceChoice(found.voice, language)
