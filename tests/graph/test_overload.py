"""Overload is answered at once with 503 + Retry-After, never a hang."""

from __future__ import annotations

import asyncio

import httpx


def test_requests_beyond_max_concurrent_get_503_with_retry_after(graph):
    # The CPU profile admits 32 synthesis requests per ingress replica (MAX_CONCURRENT);
    # 48 distinct requests at once must see some refused immediately, the rest served.
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=graph.base_url, timeout=300,
                                     headers=graph.auth) as client:
            return await asyncio.gather(*(
                client.post("/api/tts/synthesize", json={
                    "text": f"Overload test {i}.", "speaker": "Vivian", "seed": 1000 + i})
                for i in range(48)
            ))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    refused = [r for r in responses if r.status_code == 503]
    assert refused and codes.count(200) >= 1
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "overloaded"
