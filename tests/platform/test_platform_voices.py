"""Saved voices: consent for clones, encrypted at rest, key rotation, tenant isolation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from platform_testing import RECORDED, TRANSCRIPT, make_prompt  # noqa: I001 - tests/platform helper

from deployments.engine.types import VoicePrompt
from serve_app.platform.crypto import DATA_MAGIC, DecryptionError, Keyring, generate_key
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.prompts import decode_prompt, encode_prompt
from serve_app.platform.voices import Consent, VoiceLibrary


def assert_same_prompt(a: VoicePrompt, b: VoicePrompt) -> None:
    np.testing.assert_array_equal(a.ref_spk_embedding, b.ref_spk_embedding)
    assert (a.ref_code is None) == (b.ref_code is None)
    if a.ref_code is not None:
        np.testing.assert_array_equal(a.ref_code, b.ref_code)
    assert (a.ref_text, a.x_vector_only_mode) == (b.ref_text, b.x_vector_only_mode)


@pytest.mark.parametrize("icl", [True, False])
def test_prompts_serialize_compactly_without_pickle(icl):
    prompt = make_prompt(icl=icl)
    data = encode_prompt(prompt)
    assert_same_prompt(decode_prompt(data), prompt)
    assert len(data) < 20_000


def test_a_clone_keeps_the_consent_it_was_saved_under(platform):
    tenant = platform.tenants.create("acme")
    voice = platform.voices.create_clone(tenant.id, "narrator", make_prompt(), consent=RECORDED)
    assert voice.consent and voice.consent_at is not None and voice.kind == "clone"
    assert voice.as_dict()["consent_level"] == "recorded"
    with pytest.raises(InvalidRequest) as refused:  # `checked` without its evidence
        platform.voices.create_clone(tenant.id, "other", make_prompt(), consent=Consent("checked"))
    assert refused.value.param == "consent_audio"


def test_a_saved_voice_round_trips_by_id_or_name(platform):
    tenant = platform.tenants.create("acme")
    prompt = make_prompt(1)
    voice = platform.voices.create_clone(tenant.id, "narrator", prompt, consent=RECORDED,
                                         reference_audio=b"RIFF-reference", language="english")
    assert voice.id.startswith("voice_")
    assert_same_prompt(platform.voices.prompt(tenant.id, voice.id), prompt)
    assert_same_prompt(platform.voices.prompt(tenant.id, "narrator"), prompt)
    assert platform.voices.reference_audio(tenant.id, voice.id) == b"RIFF-reference"
    with pytest.raises(Conflict):
        platform.voices.create_clone(tenant.id, "narrator", prompt, consent=RECORDED)


def test_a_designed_voice_keeps_its_description_and_prompt(platform):
    tenant = platform.tenants.create("acme")
    voice = platform.voices.create_design(tenant.id, "warm", make_prompt(2),
                                          description="a warm low voice", sample_audio=b"RIFF")
    assert (voice.kind, voice.description, voice.consent) == ("design", "a warm low voice", False)
    assert_same_prompt(platform.voices.prompt(tenant.id, "warm"), make_prompt(2))


def test_tenants_never_see_use_or_delete_each_others_voices(platform):
    a = platform.keys.verify(platform.keys.create(platform.tenants.create("a").id).secret)
    b = platform.keys.verify(platform.keys.create(platform.tenants.create("b").id).secret)

    async def main():
        voice = await platform.create_clone_voice(a, "mine", make_prompt(), consent=RECORDED)
        assert [v.id for v in await platform.list_voices(b)] == []
        for attempt in (platform.get_voice, platform.voice_prompt, platform.delete_voice):
            for ref in (voice.id, "mine"):
                with pytest.raises(NotFound):
                    await attempt(b, ref)
        await platform.create_clone_voice(b, "mine", make_prompt(3), consent=RECORDED)  # own namespace
        assert [v.id for v in await platform.list_voices(a)] == [voice.id]
        assert_same_prompt(await platform.voice_prompt(a, "mine"), make_prompt())

    asyncio.run(main())


def test_voice_data_is_encrypted_at_rest_and_bound_to_its_owner(platform):
    tenant, other = platform.tenants.create("acme"), platform.tenants.create("other")
    voice = platform.voices.create_clone(tenant.id, "v", make_prompt(), consent=RECORDED,
                                         reference_audio=b"RIFF-plain-reference-audio")
    prompt_blob = platform.blobs.get(f"voices/{tenant.id}/{voice.id}/prompt")
    audio_blob = platform.blobs.get(f"voices/{tenant.id}/{voice.id}/audio")
    assert b"PK" not in prompt_blob[:64] and TRANSCRIPT.encode() not in prompt_blob
    assert b"plain-reference" not in audio_blob
    assert prompt_blob.startswith(DATA_MAGIC)  # sealed with the voice's own data key
    with pytest.raises(DecryptionError):  # not with the service key
        platform.keyring.decrypt(prompt_blob, b"")
    # a sealed blob copied under another tenant's voice does not open there
    stolen = platform.voices.create_clone(other.id, "v", make_prompt(5), consent=RECORDED)
    platform.blobs.put(f"voices/{other.id}/{stolen.id}/prompt", prompt_blob)
    with pytest.raises(DecryptionError):
        platform.voices.prompt(other.id, stolen.id)


def test_rotation_keeps_old_voices_readable_then_reseals_them(platform, tmp_path):
    tenant = platform.tenants.create("acme")
    old_key = platform.args.voice_encryption_keys.get_secret_value()
    voice = platform.voices.create_clone(tenant.id, "v", make_prompt(), consent=RECORDED,
                                         reference_audio=b"ref")
    rotated = Keyring.parse(f"{generate_key()},{old_key}")  # the new key first
    library = VoiceLibrary(platform.db, platform.blobs, rotated, cache_size=0)
    assert_same_prompt(library.prompt(tenant.id, voice.id), make_prompt())
    assert library.reencrypt() == 1 and library.reencrypt() == 0
    assert platform.voices.get(tenant.id, voice.id) is not None
    new_only = Keyring.parse(f"{rotated.primary_id}:" + _secret_of(rotated))
    assert_same_prompt(VoiceLibrary(platform.db, platform.blobs, new_only).prompt(tenant.id, "v"),
                       make_prompt())
    with pytest.raises(DecryptionError, match="not configured"):
        VoiceLibrary(platform.db, platform.blobs, Keyring.parse(old_key), 0).prompt(tenant.id, "v")


def _secret_of(keyring: Keyring) -> str:
    import base64

    return base64.urlsafe_b64encode(keyring._keys[keyring.primary_id]).decode()


def test_the_prompt_cache_is_bounded_and_a_deleted_voice_stops_working(platform):
    tenant = platform.tenants.create("acme")
    library = VoiceLibrary(platform.db, platform.blobs, platform.keyring, cache_size=2)
    ids = [library.create_clone(tenant.id, f"v{i}", make_prompt(i), consent=RECORDED).id
           for i in range(3)]
    for voice_id in ids:
        library.prompt(tenant.id, voice_id)
    assert library.cached_prompts == 2
    other_replica = VoiceLibrary(platform.db, platform.blobs, platform.keyring, cache_size=2)
    other_replica.prompt(tenant.id, ids[2])
    library.delete(tenant.id, ids[2])
    with pytest.raises(NotFound):
        other_replica.prompt(tenant.id, ids[2])  # cached there, deleted here: gone everywhere
    assert not platform.blobs.exists(f"voices/{tenant.id}/{ids[2]}/prompt")
