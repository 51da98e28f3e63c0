"""The MCP server: the tools listed and called, on the SDK's low-level `Server`.

The low-level server, not `MCPServer`: the schemas are written out (with this
server's models and limits in them), the arguments are checked by the same
code as the HTTP API's bodies, and a failure is a tool result carrying the
HTTP API's error code and message, not an exception the SDK words its own way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import mcp_types as types
import orjson
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from promptcast import __version__, ids
from promptcast.errors import ClientGone, InvalidField, NotFound, PromptcastError, UpstreamError
from promptcast.evals.complete import CompletionLimits
from promptcast.evals.records import EvalRecording
from promptcast.evals.runner import EvalRun
from promptcast.mcp_server import library
from promptcast.mcp_server.calls import Answer, Call, Report, relay_into, stream_text
from promptcast.mcp_server.services import Services
from promptcast.mcp_server.sink import EvalSink
from promptcast.mcp_server.tools import (
    EVALUATE,
    OPTIMIZE,
    TRY,
    evaluate_plan,
    optimize_request,
    planned_events,
    tools,
    try_request,
)
from promptcast.ops.auth import owner_of
from promptcast.ops.ratelimit import CLIENT_SCOPE_KEY
from promptcast.relay.relay import Limits, Upstream
from promptcast.service import run_records
from promptcast.service.template_lookup import with_template
from promptcast.wire.pump import Pump

# Where the `/mcp` endpoint leaves, in a request's scope, the news of its client leaving.
DEPARTURE_SCOPE_KEY = "promptcast.mcp.departure"

INSTRUCTIONS = (
    "promptcast rewrites prompts, often a customer-service bot's system prompt: call "
    "optimize_prompt to optimize, expand or shorten one (or to revise a rewrite with "
    "feedback), try_prompt to see how the bot answers a customer's message with it, and "
    "evaluate_prompts to compare versions over test cases with rule checks and a judge."
)


class Departure:
    """An HTTP request's client leaving, told to the one tool call listening."""

    def __init__(self) -> None:
        self.gone = False
        self._callback: Callable[[], object] | None = None

    def left(self) -> None:
        self.gone = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def on_leave(self, callback: Callable[[], object] | None) -> None:
        """Call `callback` when the client leaves (at once if it has); None unsubscribes."""
        self._callback = callback
        if self.gone and callback is not None:
            self.left()


def error_result(exc: PromptcastError) -> types.CallToolResult:
    """A failed call: the HTTP API's error code and message, and its error body as structure."""
    return types.CallToolResult(
        content=[types.TextContent(text=f"{exc.error_code}: {exc.message}")],
        structured_content=exc.body(),
        is_error=True,
    )


def _answer(answer: Answer, structure: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=answer.text)],
                                structured_content={"text": answer.text, **structure})


def build_server(services: Services) -> Server[Any]:
    """An MCP server whose tools run on `services`; serve it over any of the SDK's transports."""
    offered = tools(services.settings) + library.library_tools()
    by_name = {tool.name: tool for tool in offered}

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=offered)

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = by_name.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS,
                           f"unknown tool {params.name!r}; the tools are {', '.join(by_name)}")

        async def report(progress: float, total: float | None, message: str) -> None:
            await ctx.session.report_progress(progress, total, message)

        arguments = params.arguments or {}
        result: types.CallToolResult | None = None
        try:
            if tool.name not in _RUNS:  # the library's: no stream, nothing to cancel
                found = await library.call_library(services, tool.name, _owner(ctx), arguments)
                return types.CallToolResult(
                    content=[types.TextContent(text=orjson.dumps(found).decode())],
                    structured_content=found)
            with _cancelled_if_client_leaves(ctx):
                result = await _RUNS[tool.name](services, arguments, tool, report, _owner(ctx))
        except PromptcastError as exc:
            return error_result(exc)
        # Nobody reads this one: the client left, and the call was cancelled.
        return result or error_result(ClientGone("the client disconnected before the answer"))

    async def list_resources(ctx: ServerRequestContext[Any],
                             params: types.PaginatedRequestParams | None
                             ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=await library.list_resources(services, _owner(ctx)))

    async def list_resource_templates(ctx: ServerRequestContext[Any],
                                      params: types.PaginatedRequestParams | None
                                      ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=library.RESOURCE_TEMPLATES)

    async def read_resource(ctx: ServerRequestContext[Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        text = await library.read_resource(services, _owner(ctx), params.uri)
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=params.uri, mime_type="text/plain", text=text)])

    return Server("promptcast", version=__version__, title="promptcast",
                  instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool,
                  on_list_resources=list_resources,
                  on_list_resource_templates=list_resource_templates,
                  on_read_resource=read_resource)


def _owner(ctx: ServerRequestContext[Any]) -> str:
    """Whom a call acts for: over HTTP its API key's owner (as the HTTP API's routes do),
    over stdio the one local owner."""
    scope = getattr(ctx.request, "scope", None)
    client = scope.get(CLIENT_SCOPE_KEY) if isinstance(scope, dict) else None
    return owner_of(client if isinstance(client, str) else None)


@contextmanager
def _cancelled_if_client_leaves(ctx: ServerRequestContext[Any]) -> Iterator[None]:
    """A scope cancelled if the HTTP request carrying the call loses its client.

    On the 2025-era Streamable HTTP wire a dropped connection is not a
    cancellation to the SDK (the client could resume); to us it is, as it is on
    every other route: nobody is left to pay for the tokens.
    """
    request = ctx.request
    scope = getattr(request, "scope", None)
    departure = scope.get(DEPARTURE_SCOPE_KEY) if isinstance(scope, dict) else None
    with anyio.CancelScope() as cancel:
        if isinstance(departure, Departure):
            departure.on_leave(cancel.cancel)
        try:
            yield
        finally:
            if isinstance(departure, Departure):
                departure.on_leave(None)


async def _optimize(services: Services, arguments: dict[str, Any], tool: types.Tool,
                    report: Report, owner: str) -> types.CallToolResult:
    body = optimize_request(arguments, services.settings, tool)
    request_id = ids.request_id()
    call = Call(tool.name, body.model, body.mode.value, body.model, request_id)

    async def opening() -> Upstream:
        # A template's text is found (maybe in the database) as part of opening, as on HTTP.
        return await services.gateway.open(
            await with_template(services.library, owner, body), request_id)

    answer = await stream_text(
        services, call, opening, report,
        record=lambda stream: run_records.capture(services.library, owner, stream, body))
    return _answer(answer, {"mode": body.mode.value, "model": body.model})


async def _try(services: Services, arguments: dict[str, Any], tool: types.Tool,
               report: Report, owner: str) -> types.CallToolResult:
    request_id = ids.request_id()
    chat = try_request(arguments, services.settings, tool, request_id)
    call = Call(tool.name, chat.model, "try", chat.model, request_id)
    answer = await stream_text(
        services, call, lambda: services.service.chat(chat), report,
        record=lambda stream: run_records.capture(services.library, owner, stream, chat,
                                                  kind="try"))
    return _answer(answer, {"model": chat.model})


async def _evaluate(services: Services, arguments: dict[str, Any], tool: types.Tool,
                    report: Report, owner: str) -> types.CallToolResult:
    settings = services.settings
    saved = await _saved_cases(services, owner, arguments)
    plan = evaluate_plan(arguments, settings, tool, saved)
    request_id = ids.request_id()
    completion = CompletionLimits.from_settings(settings)
    # Kept in the library as POST /eval's runs are: its run record, and its result.
    recording = EvalRecording(plan) if services.library is not None else None
    run = EvalRun(plan, services.service, settings.models, completion, request_id=request_id,
                  observe=None if recording is None else recording.observe)
    gap = completion.run_gap(settings.eval_timeout)
    # As POST /eval's: the whole run within its limit; between two events, one completion's.
    limits = Limits(first_token_timeout=gap, idle_timeout=gap,
                    total_timeout=settings.eval_timeout, heartbeat_interval=None)

    async def opening() -> Upstream:
        return Pump(aiter(run), run.aclose)  # the run is iterated: a task pushes its events

    sink = EvalSink(planned_events(plan))
    call = Call(tool.name, plan.model, "eval", plan.model, request_id)
    library = services.library
    await relay_into(services, call, opening, sink, report, limits, record=None if (
        recording is None or library is None) else (
        lambda stream: recording.capture(library, owner, stream)))
    if sink.summary is None:  # pragma: no cover - a run that ends well ends with its summary
        raise UpstreamError("the evaluation ended without its summary", code="internal_error")
    return types.CallToolResult(
        content=[types.TextContent(text=orjson.dumps(sink.summary).decode())],
        structured_content=sink.summary)


# Each tool's call, by its name (`tools.tools()` lists the same names).
_RUNS: dict[str, Callable[[Services, dict[str, Any], types.Tool, Report, str],
                          Awaitable[types.CallToolResult]]] = {
    OPTIMIZE: _optimize, TRY: _try, EVALUATE: _evaluate}


async def _saved_cases(services: Services, owner: str,
                       arguments: dict[str, Any]) -> list[Any] | None:
    """The cases of the saved test set `test_set` names (its id, or its name), if it names one."""
    wanted = arguments.get("test_set")
    if wanted is None:
        return None
    if not isinstance(wanted, str) or not wanted:
        raise InvalidField("`test_set` must be a saved test set's id or name", field="test_set")
    try:
        # By id, else by name: the library's own lookup, as POST /eval's `testset`.
        found = await library.library_of(services).testsets.find(owner, wanted)
    except (NotFound, InvalidField) as exc:
        exc.field = "test_set"  # this tool's name for it
        raise
    return list(found["cases"])
