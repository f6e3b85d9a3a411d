"""The proxy's HTTP/1.1 layer: asyncio Protocols with httptools (llhttp) parsers.

``clients``: the clients' connections to the proxy; ``upstream``: the proxy's pooled
connections to the index and the file hosts; ``messages``: what both share (a body in flight
with flow control, a request head, a response head). What the proxy does with a request is
the handler's (``pipstorm.infra.proxy.handler``); this package only speaks HTTP.
"""
