"""MCP servers written with the official SDK, for the MCP tool tests. Run as
``python -m tests.mcp_servers.servers KIND [stdio | http PORT]``:

    good      ``forecast(city)`` answers; ``wipe_history()`` is a tool an admin list keeps from the model
    hanging   ``forecast(city)`` never answers
    crashing  ``forecast(city)`` kills the server process
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer


def build(kind: str) -> MCPServer:
    server = MCPServer(f"{kind}-weather")

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather forecast for a city."""
        if kind == "hanging":
            time.sleep(3600)
        if kind == "crashing":
            os._exit(3)
        return f"Sunny in {city}, 23°C"

    @server.tool()
    def wipe_history() -> str:
        """Delete every stored forecast (an admin's operation)."""
        return "wiped"

    return server


if __name__ == "__main__":
    kind, transport = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "stdio"
    if transport == "http":
        build(kind).run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        build(kind).run()
