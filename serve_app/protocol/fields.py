"""Field types shared by every wire format (seed, OpenAI, native, jobs, voices), defined once.

Integers are JSON numbers with no fraction: `7` and `7.0` (JSON has one number type, and JSON
Schema's "integer" admits both) are 7; `"7"`, `true` and `7.5` are not seeds. Flags are JSON
booleans: `0`, `1` and `"true"` are refused, as OpenAI refuses a value of the wrong type.
Form fields (multipart uploads) arrive as strings and are parsed with `model_validate_strings`,
which reads "7" as 7 and "true" as true there and only there. Text to speak must contain
something besides whitespace.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationInfo

SEED_MAX = 2**32 - 1
MAX_NEW_TOKENS_LIMIT = 8192
_FORM_INTEGER = re.compile(r"\s*[+-]?\d{1,20}\s*")


def _whole_number(value: object, info: ValidationInfo) -> object:
    """7.0 -> 7 (the same JSON number); a form field's "7" -> 7. Anything else is left for the
    strict integer check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if info.mode == "string" and isinstance(value, str) and _FORM_INTEGER.fullmatch(value):
        return int(value)
    return value


def _integer(**constraints) -> tuple:
    """The metadata of an integer field: whole JSON numbers only, then `constraints`."""
    return (Strict(), Field(**constraints), BeforeValidator(_whole_number))


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain something to speak, not only whitespace")
    return value


#: Text to speak: at least one non-whitespace character (the length limit is the
#: deployment's `ingress.max_text_chars`, checked by the service).
SpeechText = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
Seed = Annotated[int, *_integer(ge=0, le=SEED_MAX, description="Same seed + inputs -> same audio")]
MaxNewTokens = Annotated[int, *_integer(
    ge=2, le=MAX_NEW_TOKENS_LIMIT,
    description="Upper bound of codec frames (12.5 per second); the deployment's "
    "max_new_tokens still caps it")]
MinFrames = Annotated[int, *_integer(
    ge=0, le=MAX_NEW_TOKENS_LIMIT,
    description="Benchmarking aid: end-of-speech is ignored until this many codec frames "
    "exist (random-weight test models then give known lengths); max_new_tokens still caps it")]
OutputSampleRate = Annotated[int, *_integer(ge=8000, le=48000)]
#: A JSON boolean (a form field's "true" / "false" in uploads).
Flag = Annotated[bool, Strict()]
#: Text normalization (numbers, dates, money, units... written out before the model reads
#: them; docs/api.md "Normalization"): on unless a request turns it off.
Normalize = Annotated[bool, Strict(), Field(
    description="Read numbers, dates, times, money, percentages, units, phone numbers and "
    "common abbreviations as words before the model (Chinese and English; numbers in the "
    "other languages); false sends the text as it is")]
#: Pronunciation dictionaries a request applies (docs/api.md "Pronunciation dictionaries").
MAX_REQUEST_DICTIONARIES = 3


def _form_list(value: object, info: ValidationInfo) -> object:
    """A form field's "pdict_a,pdict_b" -> its ids (multipart uploads: /v1/audio/clone)."""
    if info.mode == "string" and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


PronunciationDictionaries = Annotated[
    tuple[Annotated[str, Field(min_length=1, max_length=40)], ...],
    Field(max_length=MAX_REQUEST_DICTIONARIES), BeforeValidator(_form_list)]
PRONUNCIATION_DESCRIPTION = (
    f"Up to {MAX_REQUEST_DICTIONARIES} pronunciation dictionary ids (pdict_...), applied in "
    "order after normalization; omitted or null: the tenant's default dictionaries; []: none "
    "(a form field: the ids separated by commas)")
#: Word timestamps with the audio (docs/api.md "Word timestamps"): "none" (default) or "word".
Timestamps = Literal["none", "word"]
TIMESTAMPS_DESCRIPTION = ("'none' (default) or 'word': each word's start and end in the audio, "
                          "with its characters in the text as sent")
#: How the text is written: plain text, or the SSML subset (docs/api.md "SSML").
InputFormat = Literal["text", "ssml"]
INPUT_FORMAT_DESCRIPTION = ("'text' (default) or 'ssml': an SSML document (<speak> with "
                            "<p>, <s>, <break>, <say-as>, <sub>, <prosody>, <lang>)")
#: OpenAI's speed range (the seed API keeps its own narrower 0.5-2.0).
OpenAISpeed = Annotated[float, Field(ge=0.25, le=4.0)]


# ------------------------------------------------ rules between fields, for the JSON schema
# What the service refuses for a combination of fields, said in the published schema too
# (pydantic's `json_schema_extra`), so that a request the schema allows is one it accepts.
#: Text with something besides whitespace (as SpeechText and the checks of ref_text,
#: description and instructions want it).
NOT_BLANK = {"type": "string", "pattern": "\\S"}


def when(field: str, value: object, then: dict) -> dict:
    """JSON Schema: if `field` is sent as `value`, `then` applies."""
    return {"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": then}


def streaming_keeps(stream_field: str, streaming: object, **neutral: object) -> dict:
    """While streaming, render options that need the whole utterance keep their neutral
    value (serve_app.synthesis.audio_stream refuses any other with a 400 naming it)."""
    rule = {"properties": {k: {"const": v} for k, v in neutral.items()}}
    if isinstance(streaming, list):
        return {"if": {"properties": {stream_field: {"enum": streaming}},
                       "required": [stream_field]}, "then": rule}
    return when(stream_field, streaming, rule)


#: A clone reads its reference's transcript (ICL) unless it clones the speaker embedding alone.
#: The consent fields a clone takes beside `consent_audio` (a file part or a data URL), as the
#: tenant's consent policy asks (docs/platform.md, "Voice cloning safety").
CONSENT_CODE_DESCRIPTION = ("The one-time code of the consent statement (POST "
                            "/v1/voices/consent-statement) the speaker read in consent_audio: "
                            "required under `checked` consent")

TRANSCRIPT_UNLESS_X_VECTOR = {
    "if": {"properties": {"x_vector_only": {"const": True}}, "required": ["x_vector_only"]},
    "else": {"required": ["ref_text"], "properties": {"ref_text": NOT_BLANK}},
}
