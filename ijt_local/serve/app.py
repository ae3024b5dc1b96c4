"""The OpenAI-compatible app `ijt-local serve` runs (serve/cli.py opens the models and starts it).

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions and POST /v1/completions (raw text, no
chat template; `echo`, legacy `logprobs`), both streamed as server-sent events with "stream": true.
Each model has one Engine (ijt_local/serve/engine.py): concurrent requests for it are decoded together in one
llama.cpp batch. The rule expert runs per request exactly as in `chat`, its state seeded
from that request's messages. Beyond OpenAI's fields a request may send `"ijt_rules"`: "off" (the model
alone), or rule names such as "eos,uniform" (an ablation); without it a `+poe` model uses its spec's rules.
With `--allow-specs` a request's `model` may also be any SPEC over a loaded model (`default+poe:eos,uniform`,
`default+runs/x.gguf@0.8`; see ijt_local/serve/spec_engines.py for how adapter sets are scheduled and bounded).
Logprobs are OpenAI's, over the product of experts, with the base model's beside them when rules ran
(`ijt_base_logprobs`, see ijt_local/serve/logprobs.py).

FastAPI validates the body; every refusal is an OpenAI-style {"error": {...}} with a 4xx status.
"""

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from ..errors import UserError
from ..runtime.session import SamplingParams
from ..runtime.token_logprobs import MAX_TOP
from .engine import Event
from .logprobs import base_logprobs, chat_logprobs, completion_logprobs, prompt_choices
from .spec_engines import BusyError, ServedModel, SpecEngines

STATIC = files("ijt_local.serve") / "static"


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    n: int = Field(default=1, ge=1, le=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP)
    ijt_rules: str | None = None


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=0)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    n: int = Field(default=1, ge=1, le=1)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP)
    echo: bool = False
    ijt_rules: str | None = None


class APIError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(
    message: str, kind: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Served:
    """What the routes serve: the models by name, the API key, and the per-request SPECs (--allow-specs)."""

    models: dict[str, ServedModel]
    api_key: str | None = None
    specs: SpecEngines | None = None


router = APIRouter()


def create_app(models: dict[str, ServedModel], api_key: str | None = None, specs: SpecEngines | None = None):
    app = FastAPI(title="ijt-local", docs_url=None, redoc_url=None)
    app.state.served = Served(models, api_key, specs)
    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.middleware("http")(check_key)
    app.middleware("http")(page_headers)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(router)
    return app


def served_of(request: Request) -> Served:
    return request.app.state.served


# ---- errors and headers --------------------------------------------------------------------------------


async def api_error(_, exc: APIError):
    kind = "authentication_error" if exc.status == 401 else "invalid_request_error"
    return JSONResponse(error_body(exc.message, kind, exc.code, exc.param), status_code=exc.status)


async def invalid_request(_, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return JSONResponse(error_body(f"the body is not valid JSON ({reason})".replace(" ()", "")), status_code=400)
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = first.get("msg", "invalid request")
    return JSONResponse(error_body(f"{where}: {message}" if where else message, param=where or None), status_code=400)


async def http_error(_, exc: HTTPException):
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)


async def check_key(request: Request, call_next):
    api_key = served_of(request).api_key
    if api_key and request.url.path.startswith("/v1/"):
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):  # constant time
            return JSONResponse(
                error_body(
                    "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error", "invalid_api_key"
                ),
                status_code=401,
            )
    return await call_next(request)


async def page_headers(request: Request, call_next):
    response = await call_next(request)
    if not request.url.path.startswith("/v1/"):  # the page runs its own scripts only, and no inline ones
        response.headers["content-security-policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
        )
        response.headers["x-content-type-options"] = "nosniff"
    return response


# ---- the page, health and models ---------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(str(STATIC / "index.html"), media_type="text/html")


@router.get("/health")
async def health(request: Request):
    served = served_of(request)
    status = {
        "status": "ok",
        "models": {
            name: {"running": m.engine.running, "waiting": m.engine.waiting} for name, m in served.models.items()
        },
    }
    if served.specs is not None:
        status["spec_engines"] = {
            name: {"running": e.running, "waiting": e.waiting} for name, e in served.specs.engines.items()
        }
    return status


@router.get("/v1/models")
async def list_models(request: Request):
    served = served_of(request)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "ijt-local", "spec": m.spec}
            for name, m in served.models.items()
        ],
        "ijt_allow_specs": served.specs is not None,
    }


# ---- what every completion does ------------------------------------------------------------------------


async def pick(request: Request, name: str | None) -> ServedModel:
    """The served model `name`, or with --allow-specs the spec `name` over a loaded model."""
    served = served_of(request)
    if served.specs is None or name in served.models or name is None:
        return pick_model(served.models, name)
    try:
        return await asyncio.to_thread(served.specs.resolve, name)
    except UserError as exc:
        raise APIError(400, f"model: {exc}", param="model") from None
    except BusyError as exc:
        raise APIError(429, str(exc), param="model") from None


async def open_job(served: ServedModel, body, submit_job):
    """Queue a request on its model's engine: (job, queue of its events). The prompt is tokenized in a
    worker thread: a huge one must not stall the other requests' streams."""
    try:
        rules = served.rules_for(body.ijt_rules)
    except UserError as exc:
        raise APIError(400, f"ijt_rules: {exc}", param="ijt_rules") from None
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event] = asyncio.Queue()
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    sampling = SamplingParams(
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
    )
    options = {
        "on_event": lambda event: loop.call_soon_threadsafe(events.put_nowait, event),
        "sampling": sampling,
        "rules": rules,
        "stop": tuple(s for s in stop if s),
        "stream": body.stream,
    }
    try:
        job = await asyncio.to_thread(submit_job, served.engine, options)
    except UserError as exc:
        param = "messages" if isinstance(body, ChatRequest) else "prompt"
        raise APIError(400, str(exc), code="context_length_exceeded", param=param) from None
    return job, events


async def last_event(request: Request, job, events: asyncio.Queue) -> Event:
    """A request not streamed: the engine reports once, at the end."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), timeout=0.5)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                raise APIError(499, "client closed the connection") from None


def streamed(job, events: asyncio.Queue, first: dict | None, chunk, include_usage: bool):
    """Server-sent events: `first` (if any), then chunk(event) per engine event, then [DONE]."""

    async def stream():
        try:
            if first is not None:
                yield {"data": json.dumps(first)}
            while True:
                event = await events.get()
                if event.delta or event.choices or event.prompt_choices or event.finish_reason:
                    yield {"data": json.dumps(chunk(event, include_usage))}
                if event.finish_reason:
                    yield {"data": "[DONE]"}
                    return
        finally:
            job.cancel()  # a client that went away frees its slot at the next step

    return EventSourceResponse(stream(), ping=15)


def failed(event: Event) -> JSONResponse:
    return JSONResponse(error_body(event.error or "generation failed", "server_error"), status_code=500)


# ---- the completions ------------------------------------------------------------------------------


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    top = (body.top_logprobs or 0) if body.logprobs else None
    served = await pick(request, body.model)
    job, events = await open_job(
        served,
        body,
        lambda engine, options: engine.submit(
            [m.model_dump() for m in body.messages],
            max_tokens=body.max_completion_tokens or body.max_tokens,
            logprobs=top,
            **options,
        ),
    )
    session = served.engine.session
    reply_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    def logprob_fields(event: Event) -> dict:
        if top is None:
            return {}
        fields = {"logprobs": chat_logprobs(session, event.choices, top)}
        base = base_logprobs(session, event.choices, top)
        if base is not None:
            fields["ijt_base_logprobs"] = base
        return fields

    def payload(choice: dict, usage: dict | None = None, kind: str = "chat.completion.chunk") -> dict:
        body = {"id": reply_id, "object": kind, "created": created, "model": served.name, "choices": [choice]}
        if usage is not None:
            body["usage"] = usage
        return body

    if body.stream:

        def chunk(event: Event, include_usage: bool) -> dict:
            delta = {"content": event.delta} if event.delta else {}
            choice = {
                "index": 0,
                "delta": delta,
                **logprob_fields(event),
                "finish_reason": finish_of(event) if event.finish_reason else None,
            }
            return payload(choice, usage_of(event) if include_usage and event.finish_reason else None)

        first = payload({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        return streamed(job, events, first, chunk, bool((body.stream_options or {}).get("include_usage")))

    event = await last_event(request, job, events)
    if event.finish_reason == "error":
        return failed(event)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": event.text},
        **logprob_fields(event),
        "finish_reason": finish_of(event),
    }
    return payload(choice, usage_of(event), "chat.completion")


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise APIError(400, f"prompt: one string per request (got a list of {len(prompt)})", param="prompt")
        prompt = prompt[0]
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens: 0 only with echo (scoring the prompt)", param="max_tokens")
    scoring_only = body.max_tokens == 0
    served = await pick(request, body.model)
    job, events = await open_job(
        served,
        body,
        lambda engine, options: engine.submit_text(
            prompt,
            max_tokens=1 if scoring_only else body.max_tokens,
            logprobs=body.logprobs,
            prompt_logprobs=body.logprobs if body.echo and body.logprobs is not None else None,
            **options,
        ),
    )
    session = served.engine.session
    reply_id, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

    def text_and_logprobs(event: Event, offset: int) -> tuple[str, dict | None]:
        """This event's text (the echoed prompt first) and its legacy logprobs, offsets from `offset`."""
        text, choices = ("", []) if scoring_only else (event.delta, event.choices)
        if event.prompt_choices is not None or (body.echo and body.logprobs is None and offset == 0):
            text = prompt + text
            if event.prompt_choices is not None:
                choices = prompt_choices(session, job.prompt, event.prompt_choices) + choices
        if body.logprobs is None:
            return text, None
        return text, completion_logprobs(session, choices, offset)

    def payload(text: str, logprobs: dict | None, finish: str | None, usage: dict | None = None) -> dict:
        body = {
            "id": reply_id,
            "object": "text_completion",
            "created": created,
            "model": served.name,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        }
        if usage is not None:
            body["usage"] = usage
        return body

    def finish_for(event: Event) -> str:
        return "length" if scoring_only else finish_of(event)

    if body.stream:
        offset = 0

        def chunk(event: Event, include_usage: bool) -> dict:
            nonlocal offset
            text, logprobs = text_and_logprobs(event, offset)
            offset += len(text)
            usage = usage_of(event, scoring_only) if include_usage and event.finish_reason else None
            return payload(text, logprobs, finish_for(event) if event.finish_reason else None, usage)

        return streamed(job, events, None, chunk, bool((body.stream_options or {}).get("include_usage")))

    event = await last_event(request, job, events)
    if event.finish_reason == "error":
        return failed(event)
    event.delta = event.text
    text, logprobs = text_and_logprobs(event, 0)
    return payload(text, logprobs, finish_for(event), usage_of(event, scoring_only))


def finish_of(event: Event) -> str:
    return "stop" if event.finish_reason == "error" else event.finish_reason


def usage_of(event: Event, scoring_only: bool = False) -> dict:
    completion = 0 if scoring_only else event.completion_tokens
    return {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": event.prompt_tokens + completion,
    }


def pick_model(models: dict[str, ServedModel], name: str | None) -> ServedModel:
    if name in models:
        return models[name]
    if name is None and len(models) == 1:
        return next(iter(models.values()))
    served = ", ".join(models)
    raise APIError(404, f"model {name!r} is not served here (served: {served})", code="model_not_found", param="model")
