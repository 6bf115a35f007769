"""Home Assistant's Wyoming protocol: a TCP surface beside HTTP, inside each ingress replica.

    wyoming_args    the `wyoming:` section of AppArgs (port, acting tenant, output rate, caps)
    listener        the asyncio TCP server on the replica's event loop: the trusted-network
                    gate (others closed at connect), the connection caps, the announcement
    connection      one client's events: describe, synthesize, synthesize-start/chunk/stop
    wyoming_voices  what `describe` lists (presets with their languages, the tenant's saved
                    voices) and the voice a synthesize names
    announce        the optional zeroconf (mDNS) `_wyoming._tcp` announcement

Every synthesis goes through the speech session (serve_app.sessions), so the configured
tenant's limits, admission and usage metering apply as on every other surface.
docs/clients.md has the client's side; docs/configuration.md the settings.
"""
