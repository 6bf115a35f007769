"""Pronunciation dictionaries on the wire: /v1/pronunciation-dictionaries (docs/api.md
"Pronunciation dictionaries"). The lengths and counts they may have are the deployment's
settings (`platform.pronunciation`), checked by the store with the field named."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol.fields import MAX_REQUEST_DICTIONARIES, Flag


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Entry(_Body):
    """`grapheme` (a word or phrase, literal text: no regular expression) is read as
    `alias`."""

    grapheme: str = Field(min_length=1, description="The word or phrase as written")
    alias: str = Field(min_length=1, description="What the model reads instead")
    case_sensitive: Flag = Field(False, description="Match the grapheme's case exactly")
    word_boundaries: Flag = Field(True, description="Match whole words only (not inside a "
                                  "longer word); Chinese, Japanese and Korean characters are "
                                  "words of their own")


class CreateDictionary(_Body):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)
    entries: list[Entry] = Field(default_factory=list)


class ImportPls(_Body):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)
    pls: str = Field(min_length=1, description="A W3C PLS 1.0 file's text (alias lexemes; a "
                     "<phoneme> is refused)")


class Entries(_Body):
    entries: list[Entry]


class RemoveEntries(_Body):
    graphemes: list[str] = Field(min_length=1, description="The graphemes to remove (as "
                                 "stored: a case-insensitive entry matches in any case)")


class DefaultDictionaries(_Body):
    dictionary_ids: list[str] = Field(max_length=MAX_REQUEST_DICTIONARIES, description=(
        "The tenant's default dictionaries, in order: applied to every request that names "
        "none; [] for none"))
