"""The consent a clone needs, asked for and checked in one place, for saved voices
(POST /v1/voices) and one-shot clones (POST /v1/audio/clone) alike.

The level comes from the tenant's policy, its plan's or the deployment's
(serve_app.platform.consent.policy):
- `none`: nothing is asked;
- `recorded`: `consent=true` must be sent (its time is kept with a saved voice);
- `checked`: `consent_code` (of a statement issued by POST /v1/voices/consent-statement,
  unexpired, unused) and `consent_audio` (the speaker reading it) must be sent; the speakers
  of the consent recording and the reference are compared on the AudioProcessor, and a
  similarity under `clone.consent_threshold` is refused with 422 `consent_speaker_mismatch`
  naming both numbers. A comparison uses the statement up, match or mismatch.
Errors name the field to send and what it must hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from deployments.args import ConsentLevel
from deployments.audio import ReferenceAudio
from serve_app.edge.api_errors import ApiError, invalid
from serve_app.platform.consent import ConsentEvidence
from serve_app.platform.keys import Principal
from serve_app.platform.models import utcnow
from serve_app.platform.service import Platform
from serve_app.platform.voices import Consent
from serve_app.synthesis.synthesis_service import SynthesisService

logger = logging.getLogger("qtts.consent")


@dataclass(frozen=True)
class ConsentOffer:
    """What a request sent about consent."""

    consent: bool = False
    code: str | None = None
    recording: bytes | None = None


async def obtain_consent(service: SynthesisService, platform: Platform, principal: Principal,
                         level: ConsentLevel, offer: ConsentOffer,
                         reference: ReferenceAudio | None) -> Consent:
    """The consent `level` asks for, checked against the prepared `reference` (needed for
    `checked` only), or the 422 that says what is missing or why it was refused."""
    if level == "none":
        return Consent("none")
    if level == "recorded":
        if not offer.consent:
            raise invalid("consent", "consent=true is required: the speaker of reference_audio "
                          "must have agreed to have their voice cloned", "consent_required")
        return Consent("recorded")
    if not (offer.code or "").strip():
        raise invalid("consent_code", "consent_code is required: get a consent statement with "
                      "POST /v1/voices/consent-statement, have the speaker read it aloud, and "
                      "send its code with the recording as consent_audio", "consent_required")
    if offer.recording is None:
        raise invalid("consent_audio", "consent_audio is required: a recording of the speaker "
                      "of reference_audio reading the consent statement", "consent_required")
    if reference is None:
        raise RuntimeError("a checked consent needs the prepared reference")
    statement = await platform.check_statement(principal, offer.code or "")
    similarity = await service.compare_speakers(reference, offer.recording)
    await platform.redeem_statement(principal, statement)
    threshold = service.args.clone.consent_threshold
    # numbers only: never the statement, the code or audio
    logger.info("consent check tenant=%s similarity=%.3f threshold=%.2f", principal.tenant_id,
                similarity, threshold)
    if similarity < threshold:
        raise ApiError(422, "consent_speaker_mismatch",
                       f"the speaker of consent_audio does not match the speaker of "
                       f"reference_audio: similarity {similarity:.2f}, at least {threshold:.2f} "
                       "is required; the statement is used up, get a new one to try again",
                       "consent_audio")
    return Consent("checked", ConsentEvidence(
        statement_id=statement.id, statement=statement.text, code=statement.code,
        language=statement.language, issued_at=statement.created_at.isoformat(),
        consented_at=utcnow().isoformat(), similarity=similarity, threshold=threshold,
        recording=offer.recording))
