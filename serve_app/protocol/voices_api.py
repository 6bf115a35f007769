"""Saved voices' request bodies (POST /v1/voices): a clone from an upload, or a design from a
description."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.platform.consent.statements import STATEMENT_LANGUAGES
from serve_app.protocol.fields import (
    CONSENT_CODE_DESCRIPTION,
    TRANSCRIPT_UNLESS_X_VECTOR,
    Flag,
    Seed,
    SpeechText,
)

DEFAULT_SAMPLE_TEXT = (
    "Hello! This is a sample of my new voice, recorded so that it sounds the same every time."
)


class CloneVoice(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=TRANSCRIPT_UNLESS_X_VECTOR)

    name: str = Field(min_length=1, max_length=100)
    consent: Flag = Field(False, description="The speaker consented to being cloned: required "
                          "(true) under `recorded` consent; under `checked`, consent_audio and "
                          "consent_code are")
    consent_code: str | None = Field(None, max_length=32, description=CONSENT_CODE_DESCRIPTION)
    ref_text: str | None = None
    x_vector_only: Flag = False
    language: str | None = None
    description: str | None = Field(None, max_length=1000)


class DesignVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=1000)
    sample_text: SpeechText = Field(DEFAULT_SAMPLE_TEXT, max_length=1000)
    language: str = "auto"
    seed: Seed | None = None


class ConsentStatementRequest(BaseModel):
    """POST /v1/voices/consent-statement: the language the speaker reads the statement in."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field("en", description=f"One of {', '.join(STATEMENT_LANGUAGES)}")
