"""A development signer for the CPU demo and tests: a test CA and a leaf certificate it
issued (ECDSA P-256, made with `cryptography`), stored in a directory and reused from there.
Every name in them says DEVELOPMENT: a manifest it signs validates, but no one should trust
it. An operator configures their own certificate instead (docs/configuration.md)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

ORGANIZATION = "Qwen3-TTS Serve DEVELOPMENT (not for production)"
CA_NAME = "Qwen3-TTS Serve development CA"
SIGNER_NAME = "Qwen3-TTS Serve development signer"


@dataclass(frozen=True)
class DevelopmentSigner:
    """Where a development signer's files are: the chain (leaf, then CA), the leaf's key and
    the CA alone (a verifier's trust anchor)."""

    cert_chain: Path
    private_key: Path
    ca: Path


def development_signer(directory: str | Path) -> DevelopmentSigner:
    """The development signer kept in `directory`, made on first use."""
    directory = Path(directory).expanduser()
    files = DevelopmentSigner(directory / "signer-chain.pem", directory / "signer-key.pem",
                              directory / "ca.pem")
    if files.cert_chain.exists() and files.private_key.exists() and files.ca.exists():
        return files
    directory.mkdir(parents=True, exist_ok=True)
    chain, key, ca = _make()
    files.ca.write_bytes(ca)
    files.cert_chain.write_bytes(chain)
    fd = os.open(files.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    (directory / "README.txt").write_text(
        "A DEVELOPMENT signer for C2PA Content Credentials, made by qwen3-tts-serve for the CPU "
        "demo and tests.\nIts CA is not trusted by anyone: configure your own certificate "
        "(audio.content_credentials.cert_chain / private_key) in production.\n")
    return files


def _make() -> tuple[bytes, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])

    def usage(**on: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                               "data_encipherment", "key_agreement", "key_cert_sign",
                               "crl_sign", "encipher_only", "decipher_only"), False)
        return x509.KeyUsage(**{**flags, **on})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(CA_NAME)).issuer_name(name(CA_NAME))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name(SIGNER_NAME)).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca_pem, key_pem, ca_pem
