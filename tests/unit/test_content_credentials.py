"""C2PA Content Credentials (deployments.audio.content_credentials): every format the c2pa
library embeds into (wav, mp3, flac) carries a manifest signed with the operator's
certificate, which the library's own Reader validates, saying the audio is AI-generated
(trainedAlgorithmicMedia) by which generator, model kind and request; a tampered file reads
as invalid; opus, aac and pcm keep the metadata mark only. Through the real routes,
SynthesisService and the AudioProcessor's own class, without Ray; and the library alone."""

from __future__ import annotations

import io

import av
import pytest

from deployments.audio.codecs import encode
from deployments.audio.content_credentials import C2PA_FORMATS, ContentSigner, read_credentials
from deployments.audio.content_credentials.development import (
    CA_NAME,
    SIGNER_NAME,
    development_signer,
)
from deployments.audio.content_credentials.signing import (
    GENERATION_ASSERTION,
    TRAINED_ALGORITHMIC_MEDIA,
)
from deployments.audio.marking import AIMark, embed_mark, read_mark, sniff_format
from serve_app.app.args import AppArgs
from serve_app.app.builder import with_development_signer
from tests.unit.test_output_marking import AUDIO, RATE, client, speech

SIGNED = ("wav", "mp3", "flac")
UNSIGNED = ("opus", "aac", "pcm")
MARK = AIMark("VoiceClone", "req-42")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return development_signer(tmp_path_factory.mktemp("c2pa-dev"))


@pytest.fixture(scope="module")
def signer(dev):
    return ContentSigner.from_files(dev.cert_chain, dev.private_key)


def test_the_library_embeds_into_wav_mp3_and_flac_only():
    assert {f.value for f in C2PA_FORMATS} == set(SIGNED)


def tampered(data: bytes) -> bytes:
    """One bit of the audio flipped, halfway through the file (inside the audio frames)."""
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("fmt", SIGNED)
def test_a_signed_file_validates_with_the_librarys_reader_and_keeps_its_mark(signer, dev, fmt):
    signed = signer.sign(embed_mark(encode(AUDIO, RATE, fmt), fmt, MARK), fmt, MARK)
    assert sniff_format(signed) == fmt and read_mark(signed) == MARK
    found = read_credentials(signed, fmt, dev.ca.read_bytes())
    assert found["valid"] and found["trusted"] and found["validation_errors"] == []
    assert found["validation_state"] == "Trusted"
    assert found["ai_generated"] and found["claim_generator"] == "Qwen3-TTS Serve"
    assert found["signer"]["common_name"] == SIGNER_NAME
    action = found["assertions"]["c2pa.actions.v2"]["actions"][0]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert found["assertions"][GENERATION_ASSERTION] == {
        "ai_generated": True, "generator": "Qwen3-TTS Serve", "model_kind": "VoiceClone",
        "request_id": "req-42"}
    # still a file every player opens: ffmpeg's demuxers decode it
    with av.open(io.BytesIO(signed)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


@pytest.mark.parametrize("fmt", SIGNED)
def test_without_the_operators_ca_it_is_valid_but_not_trusted(signer, fmt):
    signed = signer.sign(encode(AUDIO, RATE, fmt), fmt, MARK)
    found = read_credentials(signed, fmt)
    assert found["valid"] and not found["trusted"] and found["validation_errors"] == []


@pytest.mark.parametrize("fmt", SIGNED)
def test_tampered_audio_reads_as_invalid(signer, dev, fmt):
    signed = signer.sign(encode(AUDIO, RATE, fmt), fmt, MARK)
    found = read_credentials(tampered(signed), fmt, dev.ca.read_bytes())
    assert not found["valid"] and found["validation_state"] == "Invalid"
    assert any("mismatch" in e["code"] for e in found["validation_errors"])


@pytest.mark.parametrize("fmt", UNSIGNED)
def test_a_format_the_library_cannot_embed_into_keeps_the_metadata_mark_only(signer, fmt):
    marked = embed_mark(encode(AUDIO, RATE, fmt), fmt, MARK)
    assert signer.sign(marked, fmt, MARK) == marked
    assert read_credentials(marked, fmt) is None
    if fmt != "pcm":
        assert read_mark(marked) == MARK


def test_a_file_without_a_manifest_has_none(dev):
    assert read_credentials(encode(AUDIO, RATE, "wav"), "wav", dev.ca.read_bytes()) is None


def test_the_development_signer_is_made_once_and_says_what_it_is(tmp_path):
    first = development_signer(tmp_path)
    chain = first.cert_chain.read_bytes()
    assert development_signer(tmp_path).cert_chain.read_bytes() == chain  # reused
    assert first.private_key.stat().st_mode & 0o077 == 0  # readable by its owner only
    from cryptography import x509

    leaf, ca = x509.load_pem_x509_certificates(chain)
    assert "DEVELOPMENT" in leaf.subject.rfc4514_string()
    assert f"CN={CA_NAME}" in ca.subject.rfc4514_string()
    assert "DEVELOPMENT" in (tmp_path / "README.txt").read_text()


def test_the_demo_profile_signs_with_a_development_signer_in_its_data_directory(tmp_path):
    import yaml

    from serve_app.tools.cli import DEFAULT_PROFILE

    profile = yaml.safe_load(DEFAULT_PROFILE.read_text())["applications"][0]["args"]
    profile.setdefault("platform", {})["data_dir"] = str(tmp_path)
    args = with_development_signer(AppArgs.model_validate(profile))
    credentials = args.audio.content_credentials
    assert args.audio.signs_outputs()
    assert credentials.cert_chain == str(tmp_path / "c2pa-development" / "signer-chain.pem")
    assert (tmp_path / "c2pa-development" / "signer-key.pem").exists()
    # a profile that names no development signer signs nothing
    assert not with_development_signer(AppArgs()).audio.signs_outputs()


def test_a_certificate_needs_its_key():
    with pytest.raises(ValueError, match="both cert_chain and private_key"):
        AppArgs.model_validate({"audio": {"content_credentials": {"cert_chain": "/x.pem"}}})


# ------------------------------------------------------------------------------ over HTTP
@pytest.fixture(scope="module")
def http(dev):
    credentials = {"cert_chain": str(dev.cert_chain), "private_key": str(dev.private_key),
                   "trust_anchors": str(dev.ca)}
    with client(content_credentials=credentials) as c:
        yield c


def verify(http, data: bytes) -> dict:
    r = http.post("/v1/audio/verify", content=data, headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("fmt", SIGNED)
def test_speech_is_signed_and_verify_reads_the_manifest_back(http, fmt):
    r = speech(http, fmt)
    found = verify(http, r.content)
    assert found["format"] == fmt and found["mark"]["request_id"] == r.request_id
    c2pa = found["c2pa"]
    assert c2pa["valid"] and c2pa["trusted"] and c2pa["ai_generated"]
    assert c2pa["signer"]["common_name"] == SIGNER_NAME
    assert c2pa["assertions"][GENERATION_ASSERTION]["request_id"] == r.request_id
    assert c2pa["assertions"][GENERATION_ASSERTION]["model_kind"] == "CustomVoice"
    # a cached answer is the same signed file
    assert verify(http, speech(http, fmt, seed=3).content)["c2pa"]["valid"]


@pytest.mark.parametrize("fmt", SIGNED)
def test_verify_reports_a_tampered_file_invalid(http, fmt):
    found = verify(http, tampered(speech(http, fmt).content))["c2pa"]
    assert found["valid"] is False and found["validation_errors"]


@pytest.mark.parametrize("fmt", ["opus", "aac"])
def test_formats_without_manifest_support_still_carry_the_mark(http, fmt):
    r = speech(http, fmt)
    found = verify(http, r.content)
    assert found["marked"] and found["mark"]["request_id"] == r.request_id
    assert found["c2pa"] is None


def test_a_stream_carries_no_manifest_only_the_header_mark(http):
    r = speech(http, "mp3", stream_format="audio")
    assert r.headers["X-AI-Generated"] == "true"
    assert verify(http, r.content)["c2pa"] is None


def test_signing_follows_marking_off():
    args = AppArgs.model_validate({"audio": {"mark_outputs": False, "content_credentials": {
        "cert_chain": "/a.pem", "private_key": "/b.pem"}}})
    assert not args.audio.signs_outputs()


def test_a_chain_that_cannot_sign_fails_when_the_signer_is_made(dev):
    key = dev.private_key.read_bytes()
    with pytest.raises(ValueError, match="cannot sign"):
        ContentSigner(b"not a certificate", key)
    with pytest.raises(ValueError, match="self-signed"):
        ContentSigner(dev.ca.read_bytes(), key)  # the CA alone: not a signing certificate
    other = development_signer(dev.ca.parent / "other")  # a key of another certificate
    with pytest.raises(ValueError, match="cannot sign|does not validate"):
        ContentSigner(dev.cert_chain.read_bytes(), other.private_key.read_bytes())
