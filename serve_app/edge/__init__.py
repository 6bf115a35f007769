"""The edge of the ingress: what a request meets before any route. The pure-ASGI HTTP edge
(http_edge.py: request ids, the one error renderer, load shedding), the auth middleware
(auth_middleware.py: API key -> the request's `Caller`), the path table (path_table.py: public
paths and endpoint families), the caller of the current request (request_context.py), the one
error vocabulary (api_errors.py) and the WebSocket budgets (socket_gate.py)."""
