"""The MCP server: the rewrite and the try as tools, on the official `mcp` SDK's low-level server.

    Claude Desktop / Cursor / an agent
        │ stdio (`promptcast mcp`)        │ Streamable HTTP (`/mcp` on `promptcast serve`)
        ▼                                 ▼
    server.py   list and call the tools; errors as tool errors with the HTTP API's code
    tools.py    the tools' schemas and their arguments, checked as the HTTP bodies are
    calls.py    one tool call's stream: opened, relayed (relay/relay.py) into a TextSink,
                its growth reported as progress notifications, cancelled with the call
    http.py     the `/mcp` endpoint: the SDK's session manager, and a client's disconnect

It sits under `server/` (whose app mounts `/mcp`) and over `ops/` (metrics, logs):
what it needs of the server's runtime it names as a protocol (`Services`).
"""
