"""An MCP client for Weft's end-to-end tests, on the official Python SDK (PyPI `mcp` 2.x).

The Rust test serves `examples/support-bot` and runs this script against it, to show that a
client we did not write can use the hub's tools: connect (and negotiate a protocol version),
list the tools, and call each of them, including calls that fail, and, over HTTP, a refund that
waits for a person's approval, given through the hub's REST API while the call is running.

    python3 mcp_client.py http <mcp-url> <api-base> [--mode auto|legacy]
    python3 mcp_client.py stdio <weft-binary> <project-dir> [--mode auto|legacy]

Each check prints one JSON object on a line of stdout, `{"check": "<name>", ...}`; a check that
raises prints `{"check": "<name>", "exception": "<type>: <message>"}` (plus `code` for an MCP
error) and the next check runs. The script judges nothing: the Rust test asserts on the lines.
It ends with `{"check": "done"}` and exit code 0; a connection that fails prints the `connect`
check with its exception and exits with 1.
"""

import argparse
import json
import os
import sys
import uuid

import anyio
import httpx2
from mcp import Client, Implementation, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

# Seconds a request may wait for its answer.
TIMEOUT = 60.0


def emit(check, **fields):
    print(json.dumps({"check": check, **fields}, default=str), flush=True)


def describe(exc):
    """`<type>: <message>` of an exception, looking through a group of one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    fields = {"exception": f"{type(exc).__name__}: {exc}"}
    if isinstance(getattr(exc, "code", None), int):
        fields["code"] = exc.code
    return fields


async def run_check(name, check, *args):
    try:
        fields = await check(*args)
    except Exception as exc:
        emit(name, **describe(exc))
    else:
        emit(name, **fields)


def outcome(result):
    """What the Rust test looks at in a tool result."""
    first = result.content[0] if result.content else None
    return {
        "isError": result.is_error,
        "text": getattr(first, "text", None),
        "structuredContent": result.structured_content,
    }


def connect_fields(client, mode):
    info = client.server_info
    return {
        "mode": mode,
        "protocolVersion": client.protocol_version,
        "serverName": info.name if info else None,
        "serverVersion": info.version if info else None,
    }


async def list_tools(client):
    listed = await client.list_tools()
    tools = [
        {
            "name": tool.name,
            "hasInputSchema": bool(tool.input_schema),
            "hasOutputSchema": tool.output_schema is not None,
            "description": (tool.description or "")[:60],
        }
        for tool in listed.tools
    ]
    return {"tools": sorted(tools, key=lambda t: t["name"])}


def call(name, arguments):
    """A check that calls one tool and prints its result."""

    async def check(client):
        return outcome(await client.call_tool(name, arguments))

    return check


CALLS = [
    ("order_ok", call("order_status", {"order_id": 1001, "conversation_id": "c-42"})),
    # The same chat without a number: the tool recalls the order from the conversation state.
    ("order_recall", call("order_status", {"conversation_id": "c-42"})),
    ("order_invalid", call("order_status", {"order_id": 0})),
    ("order_missing", call("order_status", {"order_id": 4242})),
    ("ask_answered", call("ask", {"question": "How long does a refund take?", "email": "ada@example.com"})),
    (
        "ask_ticket",
        call("ask", {"question": "Can I pay with seashells from my aquarium?", "email": "ada@example.com"}),
    ),
    ("kb_search", call("kb_search", {"query": "When is customer service open on Saturday?"})),
    ("refund_small", call("refund", {"order_id": 1001, "amount": 5, "reason": "scratched box"})),
]


# Headers for every request to the hub over HTTP (the API token, when given).
AUTH = {}


async def approve_when_asked(api, needle, found):
    """Polls the hub's pending approvals until one mentions `needle`, and approves it."""
    last_error = None
    async with httpx2.AsyncClient(timeout=10.0, trust_env=False, headers=AUTH) as http:
        with anyio.move_on_after(30):
            while True:
                try:
                    listed = await http.get(f"{api}/approvals")
                    listed.raise_for_status()
                    for approval in listed.json()["approvals"]:
                        if approval.get("state") == "pending" and needle in (approval.get("message") or ""):
                            answer = await http.post(
                                f"{api}/approvals/{approval['id']}",
                                json={"decision": "approve", "by": "mcp-test"},
                            )
                            found.update(approvalId=approval["id"], approvalStatus=answer.status_code)
                            return
                except Exception as exc:
                    last_error = describe(exc)["exception"]
                await anyio.sleep(0.2)
    found["approvalError"] = f"no pending approval mentioned {needle!r} within 30 s" + (
        f" (last error: {last_error})" if last_error else ""
    )


async def refund_approval(client, api):
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    key = str(uuid.uuid4())
    found = {}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(approve_when_asked, api, "order 1003", found)
        result = await client.call_tool(
            "refund",
            {"order_id": 1003, "amount": 80, "reason": "arrived broken"},
            progress_callback=on_progress,
            # `meta` is an open TypedDict: keys besides progressToken go into `_meta` as they are.
            meta={"idempotencyKey": key},
        )
        # The call is over: stop polling if no approval was found (the run did not ask for one).
        tasks.cancel_scope.cancel()
    return {**outcome(result), "progress": progress, "idempotencyKey": key, **found}


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transport", choices=["http", "stdio"])
    parser.add_argument("target", help="the MCP URL (http) or the weft binary (stdio)")
    parser.add_argument("extra", help="the REST API base (http) or the project directory (stdio)")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    parser.add_argument("--token", help="the hub's API token (http), sent as a bearer token")
    args = parser.parse_args()
    if args.token:
        AUTH["Authorization"] = f"Bearer {args.token}"

    if args.transport == "http":
        # The hub wants its API token on every MCP request, as on the REST API.
        http = httpx2.AsyncClient(headers=AUTH, trust_env=False, timeout=TIMEOUT)
        server = streamable_http_client(args.target, http_client=http)
    else:
        # The SDK passes only a few "safe" variables to the child by default; pass all (WEFT_LOG...).
        server = StdioServerParameters(command=args.target, args=["mcp", args.extra], env=dict(os.environ))

    connected = False
    try:
        me = Implementation(name="weft-e2e-mcp-client", version="1.0")
        async with Client(server, mode=args.mode, read_timeout_seconds=TIMEOUT, client_info=me) as client:
            connected = True
            emit("connect", **connect_fields(client, args.mode))
            await run_check("list", list_tools, client)
            for name, check in CALLS:
                await run_check(name, check, client)
            if args.transport == "http":
                await run_check("refund_approval", refund_approval, client, args.extra.rstrip("/"))
    except Exception as exc:
        emit("connect" if not connected else "close", **describe(exc))
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
