"""The text front end: what the model reads for what the user wrote.

`normalize`: numbers, dates, money, units... written out per language; `ssml`: the SSML
subset (`input_format: "ssml"`) parsed into parts with pauses, languages and prosody;
`offsets`: the map from what the model reads back to the user's characters;
`front_end`: the one step every surface's text goes through (serve_app.synthesis.model_call).
"""
