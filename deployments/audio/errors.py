"""Errors of the audio library: every one is the caller's input, mapped to a 4xx once."""

from __future__ import annotations


class AudioInputError(ValueError):
    """Untrusted audio the service refuses.

    `code` is one of: empty, unreadable, too_short, too_long, too_large, no_speech,
    invalid_option;
    `param` names the request field when known.
    """

    def __init__(self, code: str, message: str, param: str | None = None):
        self.code = code
        self.param = param
        super().__init__(message)

    def __reduce__(self):  # keep the fields when the error crosses a Ray handle
        return (type(self), (self.code, str(self), self.param))
