"""Pronunciation dictionaries: stored per tenant and versioned, limited with the field named,
W3C PLS files in and out (a <phoneme> refused), and another tenant's dictionary answered as a
missing one (on PostgreSQL under row-level security too: tests/platform/conftest.py)."""

from __future__ import annotations

import pytest

from serve_app.platform.config import PronunciationArgs
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.pronunciation import EntryData, PronunciationDictionaries, pls

QWEN = EntryData("Qwen", "chwen")
SQL = EntryData("SQL", "sequel", case_sensitive=True)
JSON = EntryData("JSON", "jason", word_boundaries=False)


def test_a_dictionary_is_created_read_and_listed_with_its_version(platform):
    tenant = platform.tenants.create("acme")
    made = platform.dictionaries.create(tenant.id, "brands", [QWEN, SQL],
                                        description="product names")
    assert made.id.startswith("pdict_") and made.version == 1
    read = platform.dictionaries.get(tenant.id, made.id)
    assert read.entries == (QWEN, SQL) and read.name == "brands"
    assert read.as_dict()["entries"][1] == {"grapheme": "SQL", "alias": "sequel",
                                            "case_sensitive": True, "word_boundaries": True}
    listed = platform.dictionaries.list(tenant.id)
    assert [d.id for d in listed] == [made.id]
    assert "entries" not in listed[0].as_dict(entries=False)
    assert listed[0].as_dict(entries=False)["entry_count"] == 2


def test_every_change_of_the_entries_is_a_new_version(platform):
    tenant = platform.tenants.create("acme")
    store = platform.dictionaries
    made = store.create(tenant.id, "brands", [QWEN])
    added = store.add_entries(tenant.id, made.id, [SQL, EntryData("QWEN", "kwen")])
    # the case-insensitive "QWEN" is the same grapheme as "Qwen": it replaces it
    assert added.version == 2 and added.entries == (SQL, EntryData("QWEN", "kwen"))
    replaced = store.replace_entries(tenant.id, made.id, [JSON])
    assert replaced.version == 3 and replaced.entries == (JSON,)
    removed = store.remove_entries(tenant.id, made.id, ["json", "not there"])
    assert removed.version == 4 and removed.entries == ()
    unchanged = store.remove_entries(tenant.id, made.id, ["json"])
    assert unchanged.version == 4  # nothing removed: no new version
    assert store.versions(tenant.id, [made.id]) == [(made.id, 4)]


def test_a_case_sensitive_entry_is_removed_only_by_its_exact_grapheme(platform):
    tenant = platform.tenants.create("acme")
    made = platform.dictionaries.create(tenant.id, "d", [SQL])
    assert platform.dictionaries.remove_entries(tenant.id, made.id, ["sql"]).entries == (SQL,)
    assert platform.dictionaries.remove_entries(tenant.id, made.id, ["SQL"]).entries == ()


def test_the_default_dictionaries_apply_in_their_order_and_go_with_a_deleted_one(platform):
    tenant = platform.tenants.create("acme")
    store = platform.dictionaries
    first = store.create(tenant.id, "first", [QWEN])
    second = store.create(tenant.id, "second", [SQL])
    assert store.versions(tenant.id, None) == []  # no defaults yet
    store.set_defaults(tenant.id, [second.id, first.id])
    assert store.versions(tenant.id, None) == [(second.id, 1), (first.id, 1)]
    assert [d.id for d in store.defaults(tenant.id)] == [second.id, first.id]
    store.set_defaults(tenant.id, [first.id])
    assert [d.id for d in store.defaults(tenant.id)] == [first.id]
    store.delete(tenant.id, first.id)
    assert store.defaults(tenant.id) == []
    with pytest.raises(NotFound) as missing:
        store.set_defaults(tenant.id, [first.id])
    assert missing.value.param == "dictionary_ids"
    with pytest.raises(InvalidRequest):
        store.set_defaults(tenant.id, [second.id, second.id])


def test_another_tenants_dictionary_is_not_found_as_a_missing_one(platform):
    acme, other = platform.tenants.create("acme"), platform.tenants.create("other")
    theirs = platform.dictionaries.create(other.id, "secret", [QWEN])
    for call in (lambda: platform.dictionaries.get(acme.id, theirs.id),
                 lambda: platform.dictionaries.add_entries(acme.id, theirs.id, [SQL]),
                 lambda: platform.dictionaries.delete(acme.id, theirs.id),
                 lambda: platform.dictionaries.set_defaults(acme.id, [theirs.id])):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound) as refused:
        platform.dictionaries.versions(acme.id, [theirs.id])
    assert refused.value.param == "pronunciation_dictionaries"
    assert refused.value.message == "no pronunciation dictionary " + repr(theirs.id)
    assert platform.dictionaries.get(other.id, theirs.id).entries == (QWEN,)  # untouched


@pytest.mark.parametrize(("entries", "param", "says"), [
    ([EntryData("x" * 11, "a")], "entries[0].grapheme", "at most 10"),
    ([QWEN, EntryData("y", "b" * 21)], "entries[1].alias", "at most 20"),
    ([EntryData("  ", "a")], "entries[0].grapheme", "blank"),
    ([EntryData("a", " ")], "entries[0].alias", "blank"),
    ([QWEN, EntryData("qwen", "other")], "entries[1].grapheme", "already entries[0]"),
    ([EntryData(f"w{i}", "a") for i in range(4)], "entries", "at most 3"),
])
def test_the_limits_are_refused_naming_the_field(platform, entries, param, says):
    store = PronunciationDictionaries(platform.db, PronunciationArgs(
        max_entries=3, max_grapheme_chars=10, max_alias_chars=20, max_dictionaries=2))
    tenant = platform.tenants.create("acme")
    with pytest.raises(InvalidRequest) as refused:
        store.create(tenant.id, "d", entries)
    assert refused.value.param == param and says in refused.value.message


def test_a_tenant_keeps_at_most_max_dictionaries_and_entries(platform):
    store = PronunciationDictionaries(platform.db, PronunciationArgs(max_dictionaries=2,
                                                                     max_entries=2))
    tenant = platform.tenants.create("acme")
    made = store.create(tenant.id, "a", [QWEN])
    store.create(tenant.id, "b", [])
    with pytest.raises(Conflict) as refused:
        store.create(tenant.id, "c", [])
    assert refused.value.status == 409 and refused.value.code == "dictionary_limit"
    with pytest.raises(InvalidRequest) as full:
        store.add_entries(tenant.id, made.id, [SQL, JSON])
    assert full.value.param == "entries" and "at most 2" in full.value.message
    assert store.add_entries(tenant.id, made.id, [SQL]).version == 2


# ----------------------------------------------------------------------------------- PLS
PLS_FILE = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon"
         alphabet="ipa" xml:lang="en-US">
  <lexeme>
    <grapheme>W3C</grapheme>
    <alias>World Wide Web Consortium</alias>
  </lexeme>
  <lexeme>
    <grapheme>Qwen</grapheme>
    <grapheme>QWEN</grapheme>
    <alias>chwen</alias>
  </lexeme>
</lexicon>
"""


def test_a_pls_files_alias_lexemes_become_entries_one_per_grapheme():
    entries, language = pls.parse(PLS_FILE.encode())
    assert language == "en-US"
    assert entries == [EntryData("W3C", "World Wide Web Consortium"),
                       EntryData("Qwen", "chwen"), EntryData("QWEN", "chwen")]


def test_a_dictionary_round_trips_through_pls_with_its_rules():
    entries = [QWEN, SQL, JSON, EntryData("a < b & c", "less than \"b\"")]
    data = pls.render(entries, "en")
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert pls.parse(data) == (entries, "en")


def test_a_phoneme_lexeme_is_refused_naming_it():
    data = PLS_FILE.replace("<alias>chwen</alias>", "<phoneme>tʃwɛn</phoneme>").encode()
    with pytest.raises(InvalidRequest) as refused:
        pls.parse(data)
    assert refused.value.status == 422 and refused.value.param == "file"
    assert "lexeme 2 ('Qwen') has a <phoneme>" in refused.value.message


@pytest.mark.parametrize(("data", "says"), [
    (b'<?xml version="1.0"?><!DOCTYPE lexicon [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
     b"<lexicon><lexeme><grapheme>x</grapheme><alias>&b;</alias></lexeme></lexicon>",
     "DTD or entities"),
    (b'<?xml version="1.0"?><!DOCTYPE lexicon SYSTEM "file:///etc/passwd"><lexicon/>',
     "DTD or entities"),
    (b"<lexicon><lexeme><grapheme>x</grapheme>", "not well-formed"),
    (b"<speak>hi</speak>", "root is <lexicon>"),
    (b"<lexicon><lexeme><grapheme>x</grapheme></lexeme></lexicon>", "exactly one <alias>"),
    (b"<lexicon><lexeme><alias>x</alias></lexeme></lexicon>", "no <grapheme>"),
])
def test_a_file_this_service_cannot_read_is_a_422(data, says):
    with pytest.raises(InvalidRequest) as refused:
        pls.parse(data)
    assert says in refused.value.message
