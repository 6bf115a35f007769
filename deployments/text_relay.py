"""Text that is still arriving, carried from the ingress to the model replica that speaks it.

A streamed Serve call cannot take more input once it has started, and later calls are not
routed to the same replica, so the model replica pulls the text instead: the ingress replica
owns one `TextRelay` actor (0 CPUs, created on its first speech session, gone with the
replica), puts each session's text deltas into it, and passes a `TextSource` (the relay's
handle and the session's key) with the model call; the model replica's `TextSource.pump`
long-polls the relay and appends what arrives to the engine's `TextInput`. One relay serves
all sessions of its ingress replica; a poll returns as soon as text arrives, so a delta
reaches the engine one actor call after the ingress put it.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

import ray

#: A poll with no news returns after this long (the caller polls again); it bounds how long
#: a reader of a session whose ingress went away keeps an actor call open.
POLL_SECONDS = 15.0
_DROPPED_KEPT = 10_000


class RelayedText:
    """One key's text in the relay: pieces are applied at their offsets, in order."""

    def __init__(self) -> None:
        self.text = ""
        self.closed = False
        self.changed = asyncio.Event()
        #: pieces that arrived before the text in front of them: an async actor does not run
        #: one caller's calls in the order they were made
        self.early: dict[int, tuple[str, bool]] = {}

    def add(self, start: int, delta: str, closed: bool) -> None:
        self.early[start] = (delta, closed)
        while not self.closed and (piece := self.early.pop(len(self.text), None)) is not None:
            self.text += piece[0]
            self.closed = piece[1]
            self.changed.set()


@ray.remote(num_cpus=0)
class TextRelay:
    """The arriving texts of one ingress replica's sessions (see the module docstring)."""

    def __init__(self) -> None:
        self._texts: dict[str, RelayedText] = {}
        #: recently dropped keys: a late put or poll of one does not bring it back
        self._dropped: collections.OrderedDict[str, None] = collections.OrderedDict()

    def _entry(self, key: str) -> RelayedText:
        entry = self._texts.get(key)
        if entry is None:
            entry = RelayedText()
            if key in self._dropped:
                entry.closed = True  # answered as closed, and not kept
            else:
                self._texts[key] = entry
        return entry

    async def put(self, key: str, start: int, delta: str, closed: bool = False) -> None:
        """`delta` goes at character `start` of the key's text (calls may run out of order);
        `closed`: nothing follows it."""
        entry = self._entry(key)
        if not entry.closed:
            entry.add(start, delta, closed)

    async def read(self, key: str, cursor: int, timeout_s: float = POLL_SECONDS) -> tuple[str, bool]:
        """(text after `cursor`, closed), as soon as there is any or the input closed; ("",
        False) after `timeout_s` without news."""
        entry = self._entry(key)
        while len(entry.text) <= cursor and not entry.closed:
            entry.changed.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await entry.changed.wait()
            except TimeoutError:
                return "", False
        return entry.text[cursor:], entry.closed

    async def drop(self, key: str) -> None:
        entry = self._texts.pop(key, None)
        self._dropped[key] = None
        while len(self._dropped) > _DROPPED_KEPT:
            self._dropped.popitem(last=False)
        if entry is not None:
            entry.closed = True
            entry.changed.set()

    async def sessions(self) -> int:
        return len(self._texts)


@dataclass(frozen=True)
class TextSource:
    """Where a model replica reads one request's arriving text (passed with the model call)."""

    relay: Any  # a TextRelay actor handle
    key: str

    async def pump(self, into: Any) -> None:
        """Append the text to `into` (a `TextInput`) as it arrives; close it when the input
        closes. Raises if the relay is gone (its ingress replica died)."""
        cursor = 0
        while True:
            delta, closed = await self.relay.read.remote(self.key, cursor)
            if delta:
                into.append(delta)
                cursor += len(delta)
            if closed:
                into.close()
                return
