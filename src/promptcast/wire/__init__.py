"""Bytes on the wire: the SSE codec and its byte scans, the HTTP/1.1 client, Redis's protocol."""
