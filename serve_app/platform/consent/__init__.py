"""Consent to clone a voice: who must give it (`policy`), the statement a speaker reads
(`statements`), and what is kept as evidence (`evidence`). The speaker check itself runs on
the AudioProcessor (deployments.audio.analysis); docs/platform.md, "Voice cloning safety"."""

from __future__ import annotations

from serve_app.platform.consent.evidence import ConsentEvidence
from serve_app.platform.consent.policy import ConsentPolicy, resolve_consent
from serve_app.platform.consent.statements import (
    STATEMENT_LANGUAGES,
    ConsentStatements,
    Statement,
)

__all__ = ["STATEMENT_LANGUAGES", "ConsentEvidence", "ConsentPolicy", "ConsentStatements",
           "Statement", "resolve_consent"]
