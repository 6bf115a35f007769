"""Reading: a file's C2PA manifest, validated by the library's own Reader."""

from __future__ import annotations

import io
import json

from ..formats import AudioFormat
from .signing import C2PA_FORMATS, GENERATION_ASSERTION

#: Validation states the library reports for a manifest whose signature and hashes hold
#: (`Trusted`: its certificate also chains to a configured trust anchor).
VALID_STATES = ("Valid", "Trusted")
#: The library's failure code for a signing certificate that chains to no trust anchor.
UNTRUSTED = "signingCredential.untrusted"


def read_credentials(data: bytes, fmt: AudioFormat | str | None,
                     trust_anchors: bytes | None = None) -> dict | None:
    """What `data`'s manifest says, or None when it has none (or is not a format a manifest
    is embedded into): `{valid, trusted, validation_state, signer, claim_generator,
    assertions, ai_generated, validation_errors}`. `valid`: signature, certificate and the
    hashes of the audio all hold (a tampered file is invalid); `trusted`: its certificate
    chains to `trust_anchors` (PEM; the operator's own CA). `validation_errors`: the library's
    failure codes and explanations (a certificate that is merely untrusted is not one)."""
    import c2pa

    try:
        mime = C2PA_FORMATS.get(AudioFormat(fmt)) if fmt else None
    except ValueError:
        mime = None
    if mime is None:
        return None
    context = None
    if trust_anchors:
        context = c2pa.Context(c2pa.Settings.from_dict(
            {"trust": {"trust_anchors": trust_anchors.decode()}, "verify": {"verify_trust": True}}))
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, context)
    except c2pa.C2paError as exc:  # a manifest there, but unreadable: not valid
        return {"valid": False, "trusted": False, "validation_state": "Invalid", "signer": None,
                "claim_generator": None, "assertions": {}, "ai_generated": False,
                "validation_errors": [{"code": type(exc).__name__.lstrip("_"),
                                       "explanation": str(exc)}]}
    if reader is None:
        return None
    with reader:
        manifest = reader.get_active_manifest() or {}
        state = reader.get_validation_state() or "Invalid"
        results = reader.get_validation_results() or json.loads(reader.json()).get(
            "validation_results", {})
    # a certificate no trust anchor vouches for is `trusted: false`, not an error of the file
    failures = [f for f in (results.get("activeManifest") or {}).get("failure", [])
                if f.get("code") != UNTRUSTED]
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}
               ).get("actions", [])
    signature = manifest.get("signature_info") or {}
    generators = manifest.get("claim_generator_info") or [{}]
    return {
        "valid": state in VALID_STATES and not failures,
        "trusted": state == "Trusted",
        "validation_state": state,
        "signer": {"common_name": signature.get("common_name"),
                   "issuer": signature.get("issuer"), "alg": signature.get("alg")},
        "claim_generator": generators[0].get("name"),
        "ai_generated": any(str(a.get("digitalSourceType", "")).endswith(
            "/trainedAlgorithmicMedia") for a in actions),
        "assertions": {label: data for label, data in assertions.items()
                       if label in ("c2pa.actions.v2", "c2pa.actions", GENERATION_ASSERTION)},
        "validation_errors": [{"code": f.get("code"), "explanation": f.get("explanation")}
                              for f in failures],
    }
