"""Pronunciation dictionaries per tenant: the store (`store`: entries, versions, defaults,
limits) and W3C PLS files in and out (`pls`). They are applied to a request's text by the
text front end (serve_app.text.lexicon), after normalization."""

from __future__ import annotations

from serve_app.platform.pronunciation.dictionary_store import (
    DICTIONARY_ID_PREFIX,
    DictionaryInfo,
    EntryData,
    PronunciationDictionaries,
    is_dictionary_id,
)

__all__ = ["DICTIONARY_ID_PREFIX", "DictionaryInfo", "EntryData", "PronunciationDictionaries",
           "is_dictionary_id"]
