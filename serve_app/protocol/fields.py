"""Field types shared by every wire format (seed, OpenAI, native, jobs, voices), defined once.

Integers are strict: `"7"`, `true` and `7.0` are not seeds. Form fields (multipart uploads)
arrive as strings and are parsed with `model_validate_strings`, which reads "7" as 7 there and
only there. Text to speak must contain something besides whitespace.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, Strict

SEED_MAX = 2**32 - 1
MAX_NEW_TOKENS_LIMIT = 8192


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain something to speak, not only whitespace")
    return value


#: Text to speak: at least one non-whitespace character (the length limit is the
#: deployment's `ingress.max_text_chars`, checked by the service).
SpeechText = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX,
                                      description="Same seed + inputs -> same audio")]
MaxNewTokens = Annotated[int, Strict(), Field(
    ge=2, le=MAX_NEW_TOKENS_LIMIT,
    description="Upper bound of codec frames (12.5 per second); the deployment's "
    "max_new_tokens still caps it")]
MinFrames = Annotated[int, Strict(), Field(
    ge=0, le=MAX_NEW_TOKENS_LIMIT,
    description="Benchmarking aid: end-of-speech is ignored until this many codec frames "
    "exist (random-weight test models then give known lengths); max_new_tokens still caps it")]
OutputSampleRate = Annotated[int, Strict(), Field(ge=8000, le=48000)]
#: OpenAI's speed range (the seed API keeps its own narrower 0.5-2.0).
OpenAISpeed = Annotated[float, Field(ge=0.25, le=4.0)]
