"""Speech sessions: text arrives in pieces, audio leaves as it is made. The session
(speech_session.py) resolves its voice once and owns one output (session_output.py: one
encoder, the events, the usage); its two speakers write to that output: sentence by sentence
(sentence_speaker.py) or one engine slot reading the text as it arrives
(incremental_speaker.py). Used by the WebSocket route and the handle method alike."""
