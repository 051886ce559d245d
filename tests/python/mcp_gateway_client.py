"""Drives Berth's MCP gateway with the official Python MCP SDK, for the Rust tests.

Reads one JSON command per line on stdin and answers each with one JSON line on stdout,
over one client session, so a test can list, call, wait for list changes and go on.

    BERTH_TOKEN=... python mcp_gateway_client.py URL [legacy|auto|2026-07-28]

With BERTH_SPREAD set to `host:port,host:port,...`, each HTTP request goes to the next of
those origins in turn, as a load balancer in front of several Berths would send it.

URL may also be `stdio:["command", "arg", ...]`: a command that speaks MCP on its
standard input and output.

Commands: {"op": "list"}, {"op": "call", "name": ..., "arguments": {...}, "progress": bool},
{"op": "wait_list_changed", "timeout": seconds, "after": count}, {"op": "read_resource", "uri": ...},
{"op": "get_prompt", "name": ..., "arguments": {...}}, {"op": "list_resources"},
{"op": "list_prompts"}, {"op": "info"}, {"op": "notifications"} (counts by method), {"op": "call_many", "calls": [{"name", "arguments"}]}
(all at once over the one session). A failed command answers {"error": {...}}.
"""

import json
import os
import sys

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


class Spread(httpx2.AsyncBaseTransport):
    """Sends each request to the next origin in turn."""

    def __init__(self, origins):
        self.inner = httpx2.AsyncHTTPTransport()
        self.origins = origins
        self.sent = 0

    async def handle_async_request(self, request):
        host, port = self.origins[self.sent % len(self.origins)].rsplit(":", 1)
        self.sent += 1
        request.url = request.url.copy_with(host=host, port=int(port))
        request.headers["Host"] = f"{host}:{port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def dump(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


async def main(url, mode):
    token = os.environ["BERTH_TOKEN"]
    events = {"list_changed": 0, "notifications": {}}

    async def on_message(message):
        method = getattr(getattr(message, "root", message), "method", None)
        if method:
            events["notifications"][method] = events["notifications"].get(method, 0) + 1
        if method == "notifications/tools/list_changed" or isinstance(
            message, types.ToolListChangedNotification
        ):
            events["list_changed"] += 1

    if url.startswith("stdio:"):
        # A command speaking MCP on its standard input and output (`berth mcp connect`).
        command = json.loads(url[len("stdio:"):])
        transport = StdioServerParameters(command=command[0], args=command[1:])
    else:
        spread = [o for o in os.environ.get("BERTH_SPREAD", "").split(",") if o]
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(120.0, read=300.0),
            transport=Spread(spread) if spread else None,
        )
        transport = streamable_http_client(url, http_client=http)
    async with Client(transport, mode=mode, message_handler=on_message, cache=None) as client:
        out = anyio.wrap_file(sys.stdout)
        stdin = anyio.wrap_file(sys.stdin)
        async for line in stdin:
            line = line.strip()
            if not line:
                continue
            command = json.loads(line)
            try:
                answer = await run(client, command, events)
            except MCPError as e:
                answer = {"error": {"code": e.code, "message": str(e), "data": getattr(e, "data", None)}}
            except Exception as e:  # reported, so the test can say what happened
                answer = {"error": {"code": None, "message": f"{type(e).__name__}: {e}"}}
            await out.write(json.dumps(answer) + "\n")
            await out.flush()


async def run(client, command, events):
    op = command["op"]
    if op == "info":
        return {"protocol_version": client.protocol_version, "server_info": dump(client.server_info)}
    if op == "list":
        tools, cursor, pages = [], None, 0
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await client.session.list_tools(params=params)
            tools.extend(dump(t) for t in page.tools)
            pages += 1
            cursor = page.next_cursor
            if not cursor:
                return {"tools": tools, "pages": pages}
    if op == "call":
        progress, messages = [], []

        async def on_progress(value, total, message):
            progress.append(value)
            if message is not None:
                messages.append(message)

        result = await client.session.call_tool(
            command["name"],
            command.get("arguments"),
            progress_callback=on_progress if command.get("progress") else None,
        )
        return {"result": dump(result), "progress": progress, "messages": messages}
    if op == "call_many":
        results = [None] * len(command["calls"])

        async def one(index, call):
            try:
                result = await client.session.call_tool(call["name"], call.get("arguments"))
                results[index] = {"result": dump(result)}
            except MCPError as e:
                results[index] = {"error": {"code": e.code, "message": str(e)}}

        async with anyio.create_task_group() as group:
            for index, call in enumerate(command["calls"]):
                group.start_soon(one, index, call)
        return {"results": results}
    if op == "wait_list_changed":
        seen = command.get("after", events["list_changed"])
        with anyio.move_on_after(command.get("timeout", 30)):
            while events["list_changed"] <= seen:
                await anyio.sleep(0.05)
        return {"changed": events["list_changed"] > seen, "count": events["list_changed"]}
    if op == "notifications":
        return {"counts": events["notifications"]}
    if op == "list_resources":
        return dump(await client.session.list_resources())
    if op == "read_resource":
        return dump(await client.session.read_resource(command["uri"]))
    if op == "list_prompts":
        return dump(await client.session.list_prompts())
    if op == "get_prompt":
        return dump(await client.session.get_prompt(command["name"], command.get("arguments")))
    return {"error": {"code": None, "message": f"unknown op {op}"}}


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "legacy")
