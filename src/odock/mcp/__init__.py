"""The MCP gateway: governed access to MCP tool servers (see docs/mcp.md)."""
