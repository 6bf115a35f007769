"""Consent statements: the words a speaker reads into the consent recording, in their
language, with a one-time code, issued per tenant and expiring (`clone.statement_ttl_s`).

A statement is looked up by its code (`check`) before the recording is compared, and used up
(`redeem`, one atomic UPDATE) once a comparison was made, a match or a mismatch, so one
statement buys one attempt; input errors (no speech) leave it usable. The code is read out
digit by digit; the server does not transcribe the recording (no speech recogniser ships
offline): the code makes each recording fresh and one-time, the speaker encoder checks who
speaks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from serve_app.platform.db import Database
from serve_app.platform.errors import InvalidRequest
from serve_app.platform.models import ConsentStatementRow, new_id, utcnow

CODE_DIGITS = 6

#: The statement in each language it is issued in; `{code}` is the code, digits spaced.
STATEMENT_TEXTS: dict[str, str] = {
    "en": "I agree that my voice may be recorded and used to create a synthetic voice that "
          "sounds like me. My consent code is {code}.",
    "zh": "我同意录制我的声音，并用它来创建一个听起来像我的合成声音。我的同意码是 {code}。",
    "de": "Ich bin damit einverstanden, dass meine Stimme aufgenommen und zur Erstellung einer "
          "synthetischen Stimme verwendet wird, die wie ich klingt. Mein Zustimmungscode "
          "lautet {code}.",
    "fr": "J'accepte que ma voix soit enregistrée et utilisée pour créer une voix de synthèse "
          "qui me ressemble. Mon code de consentement est {code}.",
    "es": "Acepto que mi voz sea grabada y utilizada para crear una voz sintética que suene "
          "como yo. Mi código de consentimiento es {code}.",
    "ja": "私は、自分の声が録音され、私に似た合成音声の作成に使われることに同意します。"
          "私の同意コードは {code} です。",
}
STATEMENT_LANGUAGES = tuple(STATEMENT_TEXTS)


@dataclass(frozen=True)
class Statement:
    id: str
    code: str
    language: str
    text: str
    created_at: datetime
    expires_at: datetime

    def as_dict(self) -> dict:
        return {"object": "consent_statement", "id": self.id, "code": self.code,
                "language": self.language, "text": self.text,
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat()}


def _statement(row: ConsentStatementRow) -> Statement:
    return Statement(row.id, row.code, row.language, row.text, row.created_at, row.expires_at)


def _code_error(message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, param="consent_code", code=code)


class ConsentStatements:
    def __init__(self, db: Database, ttl_s: float):
        self._db = db
        self._ttl = timedelta(seconds=ttl_s)

    def issue(self, tenant_id: str, language: str = "en") -> Statement:
        """A new statement in `language` with a fresh code, valid for the configured time."""
        language = (language or "en").strip().lower()
        template = STATEMENT_TEXTS.get(language)
        if template is None:
            raise InvalidRequest(f"no consent statement in {language!r}; languages: "
                                 f"{', '.join(STATEMENT_LANGUAGES)}", param="language",
                                 code="unsupported_value")
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        now = utcnow()
        row = ConsentStatementRow(id=new_id("cst"), tenant_id=tenant_id, code=code,
                                  language=language, text=template.format(code=" ".join(code)),
                                  created_at=now, expires_at=now + self._ttl)
        with self._db.transaction(tenant_id) as session:
            session.add(row)
        return _statement(row)

    def check(self, tenant_id: str, code: str) -> Statement:
        """The tenant's statement with `code`, usable now; else 422 naming consent_code and
        why (unknown, expired, used)."""
        code = (code or "").replace(" ", "").strip()
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(ConsentStatementRow).where(
                ConsentStatementRow.tenant_id == tenant_id, ConsentStatementRow.code == code)
                .order_by(ConsentStatementRow.created_at.desc())).all()
        if not rows:
            raise _code_error("consent_code is not a code this tenant was issued: get one "
                              "with POST /v1/voices/consent-statement", "consent_code_unknown")
        now = utcnow()
        usable = [r for r in rows if r.used_at is None and r.expires_at > now]
        if usable:
            return _statement(usable[0])
        if any(r.used_at is None for r in rows):
            raise _code_error("consent_code has expired: get a new statement with POST "
                              "/v1/voices/consent-statement", "consent_code_expired")
        raise _code_error("consent_code was used already: each statement is read and "
                          "used once", "consent_code_used")

    def redeem(self, tenant_id: str, statement: Statement) -> None:
        """Use `statement` up (once, before it expires); 422 when another request did."""
        with self._db.transaction(tenant_id) as session:
            done = session.execute(update(ConsentStatementRow).where(
                ConsentStatementRow.id == statement.id,
                ConsentStatementRow.tenant_id == tenant_id,
                ConsentStatementRow.used_at.is_(None),
                ConsentStatementRow.expires_at > utcnow()).values(used_at=utcnow())).rowcount
        if done != 1:
            raise _code_error("consent_code was used already: each statement is read and "
                              "used once", "consent_code_used")
