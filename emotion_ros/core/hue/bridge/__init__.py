"""Hue bridge wire protocols: HTTP transport, TLS identity, discovery, the v1 REST and v2 (CLIP) clients.

Knows nothing about emotions; imported only by core.hue.
"""
