"""The text relay's ordering: an async Ray actor may run one caller's calls out of order, so
each piece says where it goes and the relay applies them in text order (a close that overtakes
the text must not end it early)."""

from __future__ import annotations

from deployments.text_relay import RelayedText


def test_pieces_that_arrive_out_of_order_are_applied_in_text_order():
    text = RelayedText()
    text.add(6, "world", False)
    text.add(11, "", True)  # the close overtook the text
    assert text.text == "" and not text.closed
    text.add(0, "Hello ", False)
    assert text.text == "Hello world" and text.closed


def test_nothing_is_applied_after_the_close():
    text = RelayedText()
    text.add(0, "Done.", True)
    text.add(5, " More", False)
    assert text.text == "Done." and text.closed
