"""Names clients may use, resolved to what the checkpoints understand.

Models: a deployment's name (case-insensitive) or an OpenAI model name (an alias of
CustomVoice). Languages: the seed's ISO codes, the model's own names, and "auto". Speakers: the checkpoint's
speaker ids or their display names (case-insensitive), plus OpenAI's voice names through the
one mapping below. Anything else is an error that lists what is allowed: never a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployments.engine.presets import load_presets
from deployments.engine.types import ModelInfo
from serve_app.app.args import CUSTOM_VOICE, MODEL_DEPLOYMENTS
from serve_app.edge.api_errors import invalid
from serve_app.protocol.openai_api import OPENAI_MODEL_ALIASES

#: The seed service's language codes -> Qwen3-TTS language names.
LANGUAGE_CODES: dict[str, str] = {
    "zh": "chinese",
    "en": "english",
    "ja": "japanese",
    "ko": "korean",
    "de": "german",
    "fr": "french",
    "ru": "russian",
    "pt": "portuguese",
    "es": "spanish",
    "it": "italian",
}
_CODE_OF = {name: code for code, name in LANGUAGE_CODES.items()}

#: OpenAI voice names -> preset speaker ids, chosen by gender and character (docs/api.md).
OPENAI_VOICES: dict[str, str] = {
    "alloy": "vivian",
    "ash": "ryan",
    "ballad": "uncle_fu",
    "cedar": "aiden",
    "coral": "serena",
    "echo": "aiden",
    "fable": "dylan",
    "marin": "serena",
    "nova": "vivian",
    "onyx": "uncle_fu",
    "sage": "sohee",
    "shimmer": "ono_anna",
    "verse": "eric",
}


def allowed_languages(info: ModelInfo) -> list[str]:
    """What a client may send as `language` for this model, codes first."""
    names = [n for n in info.languages if n != "auto"]
    codes = [_CODE_OF[n] for n in names if n in _CODE_OF]
    return ["auto", *codes, *names]


def language_code(name: str) -> str:
    """A model's language name as the seed's ISO code ("english" -> "en"); a name without
    one stays as it is."""
    return _CODE_OF.get(name, name)


def language_codes(info: ModelInfo) -> list[str]:
    """The languages this model speaks, as codes where they have one ("auto" left out)."""
    return [language_code(n) for n in info.languages if n != "auto"]


def resolve_language(value: str | None, info: ModelInfo, param: str = "language") -> str:
    if value is None or value.strip() == "":
        return "auto"
    key = value.strip().lower()
    name = LANGUAGE_CODES.get(key, key)
    if name in info.languages:
        return name
    raise invalid(param, f"Unsupported {param} {value!r}. Allowed: {', '.join(allowed_languages(info))}.")


def allowed_models(deployed: list[str]) -> list[str]:
    """What `model` may name (case-insensitively): the deployed models, and OpenAI's names
    when CustomVoice is one of them."""
    allowed = [d for d in MODEL_DEPLOYMENTS if d in deployed]
    if CUSTOM_VOICE in deployed:
        allowed += list(OPENAI_MODEL_ALIASES)
    return allowed


def resolve_model(name: str, deployed: list[str]) -> str:
    key = name.strip().lower()
    if key in OPENAI_MODEL_ALIASES:
        key = CUSTOM_VOICE.lower()
    for deployment in MODEL_DEPLOYMENTS:
        if key == deployment.lower() and deployment in deployed:
            return deployment
    raise invalid("model", f"Unknown model {name!r}. Allowed: {', '.join(allowed_models(deployed))}.")


def display_name(speaker_id: str) -> str:
    preset = load_presets().get(speaker_id)
    return preset.name if preset else speaker_id.title()


def allowed_speakers(info: ModelInfo) -> list[str]:
    return [display_name(s) for s in info.speakers]


def resolve_speaker(
    value: str | None, info: ModelInfo, *, param: str = "speaker", openai_names: bool = False
) -> str:
    """A speaker id of this checkpoint, from an id, a display name or an OpenAI voice."""
    allowed = allowed_speakers(info)
    if value is None or value.strip() == "":
        raise invalid(param, f"{param} is required. Allowed: {', '.join(allowed)}.", "missing_value")
    key = value.strip().lower()
    by_name = {display_name(s).lower(): s for s in info.speakers}
    speaker = key if key in info.speakers else by_name.get(key)
    if speaker is None and openai_names:
        speaker = OPENAI_VOICES.get(key)
    if speaker is not None and speaker in info.speakers:
        return speaker
    extra = f" (or an OpenAI voice: {', '.join(OPENAI_VOICES)})" if openai_names else ""
    raise invalid(param, f"Unknown {param} {value!r}. Allowed: {', '.join(allowed)}{extra}.")


@dataclass(frozen=True)
class VoiceEntry:
    id: str
    name: str
    language: str
    gender: str
    description: str


def voice_entries(info: ModelInfo) -> list[VoiceEntry]:
    """The seed's /api/voices list: the checkpoint's speakers with their display metadata."""
    presets = load_presets()
    entries = []
    for speaker in info.speakers:
        preset = presets.get(speaker)
        native = preset.native_language if preset else "auto"
        entries.append(
            VoiceEntry(
                id=display_name(speaker),
                name=display_name(speaker),
                language=language_code(native),
                gender=preset.gender if preset else "unknown",
                description=preset.description if preset else "",
            )
        )
    return entries
