"""The playground in a real browser: Debian's chromium driven by playwright, against the graph.

Each test starts from a fresh browser context (empty localStorage), types the API key once and
works the page as a person would; a screenshot of each state is saved under
artifacts/screenshots/<test name>/ (QTTS_SCREENSHOTS to put them elsewhere; CI keeps them). Without /usr/bin/chromium the tests skip, except under
QTTS_REQUIRE_BACKENDS=1 (CI, where .ci/run installs it), where they fail.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.graph.conftest import REPO_ROOT, small_app
from tests.samples import wav_bytes
from tests.speech import SENTENCES, require_speech, speak

pytestmark = pytest.mark.graph

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--autoplay-policy=no-user-gesture-required",
                  # a microphone for the record button: Chromium's fake device (a beeping tone)
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 180_000  # synthesis on 2 shared CPU cores; every wait is on a condition
SHOTS_ROOT = Path(os.environ.get("QTTS_SCREENSHOTS", REPO_ROOT / "artifacts" / "screenshots"))
LONG_TEXT = " ".join(f"Sentence {i} of a long text, read aloud by a job in the background."
                     for i in range(10))


@pytest.fixture(scope="module")
def chromium():
    """Playwright's chromium launcher (one playwright per module: its sync API runs one at a
    time)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("QTTS_REQUIRE_BACKENDS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p.chromium


@pytest.fixture(scope="module")
def browser(chromium):
    launched = chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


class Playground:
    """One page of the playground, with what it logged and requested."""

    def __init__(self, page, graph, shots: Path):
        self.page, self.graph, self.shots = page, graph, shots
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.set_default_timeout(TIMEOUT_MS)

    def open(self) -> Playground:
        self.page.goto(f"{self.graph.base_url}/playground")
        self.page.fill("#api-key", self.graph.api_key)
        self.page.click("#save-key")
        self.page.wait_for_function(
            "document.querySelectorAll('#voice optgroup[label=\"Presets\"] option').length > 0")
        self.page.wait_for_function("!document.getElementById('save-key').disabled")
        return self

    def shot(self, name: str, full_page: bool = True) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)

    def status(self) -> str:
        return self.page.text_content("#status") or ""

    def wait_status(self, pattern: str) -> None:
        """Until the status line matches, or the page shows an error (then fail with it)."""
        self.page.wait_for_function(
            "(p) => new RegExp(p).test(document.getElementById('status').textContent)"
            " || !document.getElementById('error').hidden", arg=pattern)
        self.no_errors_shown()

    def wait_played(self, player: str = "player") -> float:
        """The audio element's duration once it has loaded the result (> 0 when it plays)."""
        self.page.wait_for_function(
            "(id) => { const a = document.getElementById(id); "
            "return a.readyState >= 1 && a.duration > 0 && isFinite(a.duration); }", arg=player)
        return self.page.evaluate("(id) => document.getElementById(id).duration", player)

    def delete_voice(self, voice_id: str, confirm: bool = True) -> None:
        """Delete asks first: accept (or dismiss) the browser's confirmation."""
        self.page.once("dialog", lambda d: d.accept() if confirm else d.dismiss())
        self.page.click(f"#voices-list button[data-id='{voice_id}']")

    def no_errors_shown(self) -> None:
        assert self.page.is_hidden("#error"), self.page.text_content("#error")


@pytest.fixture()
def shots(request) -> Path:
    """The folder of this test's screenshots, named for it."""
    folder = SHOTS_ROOT / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def new_playground(browser, graph, shots):
    """Playgrounds in fresh contexts (`viewport` as a person's window), closed after."""
    contexts = []

    def make(**context_options) -> Playground:
        context = browser.new_context(**context_options)
        contexts.append(context)
        return Playground(context.new_page(), graph, shots)

    yield make
    for context in contexts:
        Playground(context.pages[0], graph, shots).shot("final")  # also of a failed test
        context.close()


@pytest.fixture()
def playground(new_playground):
    return new_playground()


def test_page_loads_offline_with_no_console_errors_and_keeps_the_key_out_of_urls(playground, graph):
    pg = playground.open()
    pg.shot("loaded")
    assert pg.console_errors == []
    assert pg.page.evaluate("localStorage.getItem('qtts.apiKey')") == graph.api_key
    assert all(u.startswith(graph.base_url) or u.startswith(("data:", "blob:")) for u in pg.requests)
    assert not any(graph.api_key in u for u in pg.requests)
    languages = pg.page.eval_on_selector_all("#language option", "os => os.map(o => o.value)")
    assert "auto" in languages and "en" in languages  # from the server's catalog
    # the root links the playground
    assert pg.page.request.get(f"{graph.base_url}/").json()["playground"] == "/playground"
    # it says where keys come from and, in the demo, that the models make noise
    assert "qtts demo" in pg.page.text_content("#key-help")
    assert pg.page.is_visible("#tiny-note") and "noise" in pg.page.text_content("#tiny-note")
    # the API's defaults: its default voice and format, no fixed seed
    assert pg.page.input_value("#voice").lower() == "vivian"
    assert pg.page.input_value("#format") == "mp3" and pg.page.input_value("#seed") == ""
    assert pg.page.text_content("#key-status") == "Key accepted; saved in this browser."


def test_preset_synthesis_plays_with_a_waveform_and_a_download(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "Vivian")
    pg.page.select_option("#format", "wav")
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    assert pg.wait_played() > 0
    assert pg.page.get_attribute("#download", "download") == "speech.wav"
    drawn = pg.page.evaluate(
        "(() => { const c = document.getElementById('waveform'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()")
    assert drawn > 0
    pg.no_errors_shown()
    pg.shot("preset-played")
    assert pg.console_errors == []


def test_streaming_shows_time_to_first_audio(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "alloy")
    pg.page.click("#stream")
    pg.page.wait_for_function("window.qttsPlayground.ttfaMs !== null")
    pg.wait_status("^Streamed")
    assert re.fullmatch(r"\d+ ms", pg.page.text_content("#ttfa"))
    assert pg.page.evaluate("window.qttsPlayground.streamedSeconds") > 0
    assert pg.wait_played() > 0
    pg.no_errors_shown()
    pg.shot("streamed")
    assert pg.console_errors == []


def test_saves_a_designed_voice_uses_it_and_deletes_it(playground):
    pg = playground.open()
    pg.page.check("input[name=mode][value=design]")
    pg.page.fill("#description", "A warm, low voice of an old storyteller.")
    pg.page.fill("#new-voice-name", "storyteller")
    pg.page.click("#create-designed-voice")
    pg.wait_status("^Saved voice storyteller")
    voice_id = pg.page.input_value("#voice")
    assert voice_id.startswith("voice_")
    assert voice_id in pg.page.evaluate("window.qttsPlayground.savedVoices")
    pg.shot("voice-saved")
    pg.page.select_option("#format", "mp3")
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    assert pg.wait_played() > 0
    pg.shot("saved-voice-played")
    pg.delete_voice(voice_id, confirm=False)  # asked first: dismissed, nothing deleted
    pg.page.wait_for_selector(f"#voices-list button[data-id='{voice_id}']:not([disabled])")
    assert voice_id in pg.page.evaluate("window.qttsPlayground.savedVoices")
    pg.delete_voice(voice_id)
    pg.wait_status("^Deleted storyteller")
    pg.page.wait_for_function(
        "(id) => !window.qttsPlayground.savedVoices.includes(id)", arg=voice_id)
    pg.no_errors_shown()
    assert pg.console_errors == []


def test_long_text_job_reaches_100_percent_then_plays(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "Ryan")
    pg.page.select_option("#format", "wav")
    pg.page.fill("#text", LONG_TEXT)
    pg.page.click("#submit-job")
    pg.page.wait_for_function("document.getElementById('job').hidden === false")
    pg.shot("job-running")
    pg.wait_status("^Job .* done")
    assert pg.page.evaluate("document.getElementById('job-progress').value") == 100
    assert pg.page.text_content("#job-percent") == "100%"
    statuses = pg.page.evaluate("window.qttsPlayground.jobStatuses")
    assert statuses[-1] == "succeeded" and set(statuses) <= {"queued", "running", "succeeded"}
    assert pg.wait_played() > 0
    pg.no_errors_shown()
    # the job's captions: both downloads offered, the WebVTT also the player's caption track
    assert pg.page.get_attribute("#captions-vtt", "download") == "captions.vtt"
    assert pg.page.get_attribute("#captions-srt", "download") == "captions.srt"
    assert pg.page.is_visible("#captions-vtt") and pg.page.is_visible("#captions-srt")
    cues = pg.page.evaluate(
        "fetch(document.getElementById('captions-vtt').href).then(r => r.text())")
    assert cues.startswith("WEBVTT") and "Sentence 0 of a long text" in cues
    assert pg.page.evaluate("document.querySelectorAll('#player track').length") == 1
    pg.shot("job-done")
    # the next action starts clean: the finished job's bar and figures leave
    pg.page.fill("#text", "Short.")
    pg.page.click("#synthesize")
    pg.page.wait_for_function("document.getElementById('job').hidden")
    pg.wait_status("^Done")
    assert pg.page.is_hidden("#captions-vtt")  # the job's captions leave with it
    assert pg.console_errors == []


WORDS_TEXT = "One two three four five six seven eight nine ten."
#: The highlighted word's index (-1: none) and the player's position.
HIGHLIGHT = ("(() => { const spans = [...document.querySelectorAll('#words .word')];"
             " return [spans.findIndex(s => s.classList.contains('current')),"
             " document.getElementById('player').currentTime]; })()")


def test_the_words_are_highlighted_as_they_are_heard(new_playground, graph):
    """Synthesis asks for word timestamps and shows the text as words; the one being heard is
    highlighted and the highlight moves on as the audio plays and where it is sought to. On a
    copy of the CPU profile without the aligner (estimated times: the tiny random aligner may
    put several words at one instant), so every word has its own stretch of the audio."""
    with small_app(graph, "words-playground", aligner=None) as url:
        pg = new_playground()
        pg.page.goto(f"{url}/playground")
        pg.page.fill("#api-key", graph.api_key)
        pg.page.click("#save-key")
        pg.page.wait_for_function(
            "document.querySelectorAll('#voice optgroup[label=\"Presets\"] option').length > 0")
        pg.page.select_option("#voice", "Ryan")
        pg.page.select_option("#format", "wav")
        pg.page.fill("#seed", "3")
        pg.page.fill("#text", WORDS_TEXT)
        pg.page.click("#synthesize")
        pg.wait_status("^Done")
        duration = pg.wait_played()
        assert pg.page.eval_on_selector_all("#words .word", "els => els.map(e => e.textContent)") \
            == WORDS_TEXT.rstrip(".").split()
        # playing: the highlight leaves the first word while the audio goes on
        pg.page.evaluate("(() => { const p = document.getElementById('player');"
                         " p.currentTime = 0; p.play(); })()")
        pg.page.wait_for_function(
            "(() => { const s = [...document.querySelectorAll('#words .word')];"
            " return s.findIndex(x => x.classList.contains('current')) >= 1; })()")
        pg.shot("words-playing")
        # sought to: each position highlights the last word started by then, in order
        seen = []
        for k in range(1, 10):
            t = duration * k / 10
            pg.page.evaluate("(t) => { const p = document.getElementById('player'); p.pause();"
                             " p.currentTime = t; }", t)
            pg.page.wait_for_function(
                "(t) => { const p = document.getElementById('player');"
                " const s = [...document.querySelectorAll('#words .word')];"
                " const want = s.map(x => Number(x.dataset.start) <= p.currentTime)"
                ".lastIndexOf(true);"
                " return !p.seeking && Math.abs(p.currentTime - t) < 0.05"
                " && s.findIndex(x => x.classList.contains('current')) === want; }", arg=t)
            seen.append(pg.page.evaluate(HIGHLIGHT)[0])
        assert seen == sorted(seen) and len(set(seen)) >= 3, seen
        pg.no_errors_shown()
        assert pg.console_errors == []


def test_bad_input_shows_the_servers_error_message(playground):
    pg = playground.open()
    pg.page.fill("#seed", "-5")
    pg.page.click("#synthesize")
    pg.page.wait_for_selector("#error:not([hidden])")
    message = pg.page.text_content("#error")
    assert "The server said (seed): seed must be 0 or more." in message  # one sentence
    assert "422 invalid_value" in message
    pg.shot("bad-input")
    # the browser logs the failed request itself; nothing else may be an error
    assert all("status of 422" in e for e in pg.console_errors), pg.console_errors


def test_clone_needs_consent_then_plays_and_saves(playground):
    pg = playground.open()
    pg.page.check("input[name=mode][value=clone]")
    pg.page.set_input_files("#ref-audio", files=[{
        "name": "reference.wav", "mimeType": "audio/wav", "buffer": wav_bytes(2.0)}])
    assert pg.wait_played("ref-player") == pytest.approx(2.0, abs=0.05)  # heard before cloning
    pg.page.fill("#ref-text", "This is my voice.")
    pg.page.click("#synthesize")
    pg.page.wait_for_selector("#error:not([hidden])")
    assert "consent" in pg.page.text_content("#error")  # nothing sent without the box ticked
    pg.page.check("#consent")
    pg.page.select_option("#format", "wav")
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    assert pg.wait_played() > 0
    pg.shot("cloned")
    pg.page.fill("#new-voice-name", "my clone")
    pg.page.click("#create-cloned-voice")
    pg.wait_status("^Saved voice my clone")
    voice_id = pg.page.input_value("#voice")
    assert voice_id in pg.page.evaluate("window.qttsPlayground.savedVoices")
    pg.delete_voice(voice_id)
    pg.wait_status("^Deleted my clone")
    pg.no_errors_shown()
    assert pg.console_errors == []


def test_records_reference_audio_in_the_browser_and_clones_it(playground):
    pg = playground.open()
    pg.page.check("input[name=mode][value=clone]")
    pg.page.click("#record")
    pg.page.wait_for_function("window.qttsPlayground.recordedSeconds >= 3")
    pg.page.click("#record")  # stop
    pg.page.wait_for_function(
        "/^Recorded/.test(document.getElementById('record-status').textContent)")
    assert re.match(r"Recorded \d+\.\d s", pg.page.text_content("#record-status"))  # seconds
    pg.page.wait_for_function(  # and it plays back before it is sent anywhere
        "() => { const a = document.getElementById('ref-player'); return !a.hidden && a.readyState >= 1; }")
    pg.page.check("#x-vector-only")  # a beeping tone has no transcript
    pg.page.check("#consent")
    pg.page.select_option("#format", "wav")
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    assert pg.wait_played() > 0
    pg.shot("recorded-clone")
    assert pg.console_errors == []


def test_the_recorder_shows_the_speech_seconds_growing_while_recording(chromium, tmp_path,
                                                                       graph, shots):
    """A person reading into the microphone (Chromium's fake device playing a festival voice's
    recording) sees how much speech the server's detector found, growing as they speak."""
    require_speech()
    voice = tmp_path / "reading.wav"
    voice.write_bytes(speak("kal", " ".join(SENTENCES[:3])))
    browser = chromium.launch(executable_path=str(CHROMIUM), args=[
        *CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={voice}"])
    try:
        pg = Playground(browser.new_context().new_page(), graph, shots).open()
        pg.page.check("input[name=mode][value=clone]")
        pg.page.click("#record")
        pg.page.wait_for_function("window.qttsPlayground.speechSeconds > 0")
        first = pg.page.evaluate("window.qttsPlayground.speechSeconds")
        status = pg.page.text_content("#record-status")
        assert re.search(r"^Recording \.\.\. \d+\.\d s . speech: \d+\.\d s", status), status
        pg.shot("speech-seconds-while-recording")
        # it grows as the reading goes on, while still recording
        pg.page.wait_for_function("(s) => window.qttsPlayground.speechSeconds > s + 1", arg=first)
        assert pg.page.text_content("#record") == "Stop"
        pg.page.click("#record")  # stop: the whole recording is measured once more
        pg.page.wait_for_function(
            "/^Recorded .* speech: /.test(document.getElementById('record-status').textContent)")
        pg.shot("speech-seconds-recorded")
        assert pg.console_errors == []
    finally:
        browser.close()


# ------------------------------------------------- type and hear: /v1/audio/speech/stream
LIVE_TYPED = "Hello there, this is typed. And"
LIVE_REST = " it is heard as it comes."
LIVE_STATE = "window.qttsPlayground.live"


def live(pg, field: str):
    return pg.page.evaluate(f"{LIVE_STATE}.{field}")


def wait_live_end(pg) -> None:
    """Until the session's socket has closed (after done, or after an error event)."""
    pg.page.wait_for_function(f"{LIVE_STATE}.closeCode !== null")


def test_type_and_hear_speaks_while_typing_and_shows_usage(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "Vivian")
    assert pg.page.input_value("#live-mode") == "sentence"  # the default
    box = pg.page.locator("#live-text")
    box.press_sequentially(LIVE_TYPED, delay=15)  # word by word; "And" goes after the pause
    # the first sentence is heard while the text is still open (no Finish pressed yet)
    pg.page.wait_for_function(f"{LIVE_STATE}.ttfaMs !== null || {LIVE_STATE}.error !== null")
    assert live(pg, "error") is None, live(pg, "error")
    assert live(pg, "done") is None and live(pg, "closeCode") is None
    # counted from when the first sentence was complete, not from the first keystroke
    assert re.fullmatch(r"\d+ ms after its sentence was complete", pg.page.text_content("#live-ttfa"))
    assert live(pg, "sentenceMs") == live(pg, "ttfaMs")
    assert live(pg, "sessionId").startswith("sess_")
    pg.shot("live-first-audio")
    box.press_sequentially(LIVE_REST, delay=15)
    pg.page.click("#live-finish")
    wait_live_end(pg)
    assert live(pg, "error") is None, live(pg, "error")
    assert live(pg, "closeCode") == 1000  # the page closes after done
    done = live(pg, "done")
    typed = LIVE_TYPED + LIVE_REST
    assert live(pg, "text") == typed  # every delta, concatenated, is what was typed
    assert done["cancelled"] is False
    assert done["usage"]["characters"] == len(typed)
    assert done["usage"]["requests"] == 2 and done["usage"]["audio_seconds"] > 0
    assert live(pg, "seconds") > 0
    usage = pg.page.text_content("#live-usage")
    assert usage.startswith("Done.") and f"{len(typed)} characters" in usage
    assert pg.wait_played("live-player") > 0  # the session's result, under the session
    assert pg.page.get_attribute("#live-download", "download") == "speech.wav"
    assert pg.page.is_hidden("#live-error")
    pg.shot("live-done")
    assert pg.console_errors == []
    # keys never travel in a URL: the browser sends it in the first message
    assert not any(pg.graph.api_key in u for u in pg.requests)


def test_type_and_hear_stop_cancels(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "Ryan")
    text = " ".join(f"Sentence number {i} is here to keep the model busy." for i in range(6))
    pg.page.fill("#live-text", text)  # one input: all but the last word at once
    pg.page.wait_for_function(f"{LIVE_STATE}.ttfaMs !== null || {LIVE_STATE}.error !== null")
    assert live(pg, "error") is None, live(pg, "error")
    pg.page.click("#live-stop")
    wait_live_end(pg)
    assert live(pg, "error") is None, live(pg, "error")
    done = live(pg, "done")
    assert done["cancelled"] is True
    assert 0 < done["usage"]["characters"] < len(text)  # the rest was dropped
    assert pg.page.text_content("#live-usage").startswith("Stopped.")
    assert pg.page.text_content("#live-state") == "Stopped."
    assert live(pg, "closeCode") == 1000
    pg.shot("live-stopped")
    assert pg.console_errors == []


def test_type_and_hear_shows_error_events(playground):
    pg = playground.open()
    # an unknown saved voice: a 404 error event, close 4404
    pg.page.evaluate("() => { const s = document.getElementById('voice');"
                     " s.add(new Option('gone', 'voice_doesnotexist')); s.value = 'voice_doesnotexist'; }")
    pg.page.fill("#live-text", "Hello there.")
    wait_live_end(pg)
    message = pg.page.text_content("#live-error")
    assert pg.page.is_visible("#live-error") and "voice_doesnotexist" in message, message
    assert live(pg, "closeCode") == 4404 and "(closed 4404)" in message
    assert live(pg, "done") is None
    pg.shot("live-unknown-voice")
    # a bad key: refused before any work, close 1008; the page says so
    pg.page.select_option("#voice", "Vivian")
    pg.page.fill("#api-key", "qtts_not_a_real_key")
    pg.page.click("#save-key")
    pg.page.wait_for_function("!document.getElementById('save-key').disabled")
    # the key's state is what the server said, and no tenant's voices stay listed
    assert pg.page.text_content("#key-status").startswith("The server refused this key")
    assert pg.page.evaluate("window.qttsPlayground.keyAccepted") is False
    assert pg.page.evaluate("window.qttsPlayground.savedVoices") == []
    assert pg.page.locator("#voice optgroup[label='Saved voices']").count() == 0
    assert pg.page.locator("#voice option").count() > 0  # the presets, from the public listing
    pg.page.wait_for_function(f"{LIVE_STATE}.sessions === 1")
    pg.page.fill("#live-text", "Hello there, again.")  # nothing was spoken: all of it again
    pg.page.wait_for_function(f"{LIVE_STATE}.sessions === 2 && {LIVE_STATE}.closeCode !== null")
    message = pg.page.text_content("#live-error")
    assert live(pg, "closeCode") == 1008 and "(closed 1008)" in message, message
    assert "[invalid_api_key]" in message, message
    assert live(pg, "text").startswith("Hello there,")
    pg.shot("live-bad-key")
    # the browser logs the refused HTTP calls of the key form; nothing else may be an error
    assert all("status of 401" in e for e in pg.console_errors), pg.console_errors


def test_type_and_hear_mode_selector_sends_the_mode(playground):
    pg = playground.open()
    pg.page.select_option("#voice", "alloy")
    pg.page.select_option("#live-mode", "incremental")
    pg.page.fill("#live-text", "Hello there.")
    pg.page.click("#live-finish")
    wait_live_end(pg)
    assert live(pg, "mode") == "incremental"
    assert live(pg, "error") is None, live(pg, "error")  # the model read it as it was typed
    assert live(pg, "done")["usage"]["characters"] == len("Hello there.")
    assert pg.page.is_hidden("#live-error")
    pg.shot("live-mode")


# ------------------------------------------------------- where people look (issue 20)
def _in_viewport(pg, selector: str) -> bool:
    return pg.page.evaluate(
        "(s) => { const r = document.querySelector(s).getBoundingClientRect();"
        " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }", selector)


def test_the_result_is_in_view_at_1280x900_after_synthesize(new_playground):
    pg = new_playground(viewport={"width": 1280, "height": 900}).open()
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    assert pg.wait_played() > 0
    assert pg.page.evaluate("window.scrollY") == 0  # nobody scrolled
    for selector in ("#player", "#download", "#status"):
        assert _in_viewport(pg, selector), selector
    pg.shot("synthesized-1280x900", full_page=False)  # what the person sees
    assert pg.console_errors == []


def test_each_action_clears_what_the_last_one_left(playground, graph):
    pg = playground.open()
    pg.page.fill("#seed", "-5")
    pg.page.click("#synthesize")
    pg.page.wait_for_selector("#error:not([hidden])")
    assert pg.status() == "Failed."
    pg.page.fill("#api-key", graph.api_key)  # saving a (valid) key again: no stale failure
    pg.page.click("#save-key")
    pg.page.wait_for_function("window.qttsPlayground.keyAccepted === true")
    assert pg.status() == "" and pg.page.is_hidden("#error")
    pg.page.fill("#seed", "3")
    pg.page.click("#stream")
    pg.wait_status("^Streamed")
    assert "received" in pg.page.text_content("#stream-seconds")
    pg.shot("streamed")
    pg.page.click("#synthesize")
    pg.page.wait_for_function(  # the stream's figures went at the click, before the answer
        "document.getElementById('stream-seconds').textContent === ''"
        " && document.getElementById('ttfa-line').hidden")
    pg.wait_status("^Done")
    pg.no_errors_shown()
    assert all("status of 422" in e for e in pg.console_errors), pg.console_errors


def test_a_streamed_download_is_in_the_chosen_format(playground):
    pg = playground.open()
    pg.page.select_option("#format", "mp3")
    pg.page.click("#stream")
    pg.wait_status("^Streamed")
    assert pg.page.text_content("#download") == "Download mp3"
    with pg.page.expect_download() as download:
        pg.page.click("#download")
    saved = download.value
    assert saved.suggested_filename == "speech.mp3"
    data = Path(saved.path()).read_bytes()
    assert data[:3] == b"ID3" or data[0] == 0xFF  # an mp3 stream, not a wav
    pg.wait_status("^Downloaded the mp3 file")
    assert pg.console_errors == []


def test_one_audio_plays_at_a_time(playground):
    pg = playground.open()
    pg.page.select_option("#format", "wav")
    pg.page.fill("#text", LONG_TEXT[:300])  # long enough to still play when the session speaks
    pg.page.click("#synthesize")
    pg.wait_status("^Done")
    pg.page.evaluate("document.getElementById('player').loop = true")  # it keeps playing
    pg.page.wait_for_function("!document.getElementById('player').paused")
    pg.page.fill("#live-text", "Hello there. ")  # a session speaks: the result above stops
    pg.page.wait_for_function(f"{LIVE_STATE}.ttfaMs !== null || {LIVE_STATE}.error !== null")
    assert live(pg, "error") is None, live(pg, "error")
    assert pg.page.evaluate("document.getElementById('player').paused")
    pg.page.click("#live-stop")
    wait_live_end(pg)
    assert pg.console_errors == []


def test_a_narrow_screen_fits_every_control(new_playground):
    pg = new_playground(viewport={"width": 400, "height": 860}).open()
    widest = pg.page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('select, input, textarea, button, audio')]"
        ".filter((e) => e.offsetParent).map((e) => e.getBoundingClientRect().right))")
    assert widest <= 400, widest
    assert pg.page.evaluate("document.documentElement.scrollWidth") <= 400
    pg.shot("narrow-400")


# ------------------------------------------------------------ the landing page and /docs
def test_every_banner_link_works_in_a_browser_without_a_key(browser, graph, shots):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(graph.base_url + "/")
        assert page.title() == "Qwen3-TTS Serve"
        page.screenshot(path=str(shots / "landing.png"), full_page=True)
        for path in ("/playground", "/docs", "/docs/guide", "/redoc", "/api/health",
                     "/v1/audio/voices", "/playground/"):
            response = page.goto(graph.base_url + path)
            assert response.status == 200, (path, response.status)
        assert page.url == graph.base_url + "/playground"  # the trailing slash redirected
        assert page.goto(graph.base_url + "/nope").status == 404
    finally:
        context.close()


def test_docs_render_with_the_network_blocked_and_authorize_sends_the_key(browser, graph, shots):
    """No request leaves 127.0.0.1; Authorize takes a key and Try it out sends it. (Until the
    OpenAPI document declares its Bearer scheme, the test adds one to the document the page
    reads, so the page's own Authorize flow is what is tested.)"""
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    document = page.request.get(graph.base_url + "/openapi.json").json()
    if not document.get("components", {}).get("securitySchemes"):
        document.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]

    def only_local(route):
        url = route.request.url
        if url == graph.base_url + "/openapi.json":
            return route.fulfill(status=200, content_type="application/json",
                                 body=json.dumps(document))
        if url.startswith(graph.base_url) or url.startswith("data:"):
            return route.continue_()
        outside.append(url)
        return route.abort()

    context.route("**/*", only_local)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(graph.base_url + "/docs")
        page.wait_for_selector(".swagger-ui .information-container .title", timeout=60_000)
        assert "Qwen3-TTS Serve" in page.text_content(".swagger-ui .information-container .title")
        page.click(".swagger-ui .auth-wrapper button.authorize")
        page.fill(".swagger-ui .modal-ux input", graph.api_key)
        page.click(".swagger-ui .modal-ux .auth-btn-wrapper button.authorize")
        page.click(".swagger-ui .modal-ux .auth-btn-wrapper button.btn-done")
        page.click(".swagger-ui .opblock-summary-path[data-path='/v1/models']")
        page.click(".swagger-ui .opblock.is-open .try-out__btn")
        page.click(".swagger-ui .opblock.is-open button.execute")
        status = page.wait_for_selector(
            ".swagger-ui .opblock.is-open .live-responses-table tr.response .response-col_status")
        assert status.text_content().strip().startswith("200")  # the key went with it
        page.screenshot(path=str(shots / "docs-offline-authorized.png"), full_page=False)
        assert outside == [] and errors == []
        page.goto(graph.base_url + "/docs/guide")
        assert "WebSocket" in page.text_content("h1")
    finally:
        context.close()
