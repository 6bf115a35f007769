"""Qwen3-TTS Serve: the application above the Ray deployments, grouped by role.

    app/        the builder (AppArgs -> the Serve graph), the ingress deployment, each
                replica's HTTP app, the typed args and the environment settings
    edge/       what every request passes first: request id and the one error renderer,
                authentication, the path table, the request's caller, socket budgets
    routes/     HTTP only: parse a wire format, call one service method, frame the answer
    protocol/   every wire model (HTTP bodies, the handle API's inputs and outputs, the
                speech session's messages), and nothing else
    synthesis/  the typed operations behind every surface: the voice selector, the service
                and its model call, admission and metering, streams, the result cache,
                availability, health, the catalog, saved voices, jobs
    text/       the text front end: normalization, the SSML subset, the map back to the
                user's characters (read by the model call, beside synthesis)
    sessions/   the speech session (text in pieces, audio as it is made) and its two speakers
    platform/   the multi-tenant platform, Ray-free: tenants, keys, limits, usage, voices, jobs
    tools/      operator tools: the `qtts` CLIs, cluster manifests, serve-config profiles

Imports point one way: app -> routes -> sessions -> synthesis, text -> edge -> protocol, platform
(tests/unit/test_layering.py checks it); docs/architecture.md walks each surface through them.
"""

__version__ = "0.1.0"
