"""The OpenAI-compatible app `ijt-local serve` runs (serve/cli.py opens the models and starts it).

Endpoints: GET /health, GET /metrics (Prometheus, serve/metrics.py), GET /v1/models, POST /tokenize and
/detokenize (llama.cpp's shapes), POST /v1/chat/completions and POST /v1/completions (raw text, no chat
template; `echo`, legacy `logprobs`), both streamed as server-sent events with "stream": true.
Each model has one Engine (ijt_local/serve/engine.py): concurrent requests for it are decoded together in one
llama.cpp batch. The rule expert runs per request exactly as in `chat`, its state seeded
from that request's messages. Beyond OpenAI's fields a request may send `"ijt_rules"`: "off" (the model
alone), or rule names such as "eos,uniform" (an ablation); without it a `+poe` model uses its spec's rules.
`logit_bias`, `presence_penalty`, `frequency_penalty` and a grammar (`response_format` json_object /
json_schema, or a GBNF `grammar`) are scores in the same product (ijt_local/runtime/scores.py); `top_k` and
`min_p` join `top_p` in the sampler; `n` choices are `n` sequences seeded seed, seed + 1, ...
With `--allow-specs` a request's `model` may also be any SPEC over a loaded model (`default+poe:eos,uniform`,
`default+runs/x.gguf@0.8`; see ijt_local/serve/spec_engines.py for how adapter sets are scheduled and bounded).
Logprobs are OpenAI's, over the product of experts, with the base model's beside them when any expert ran
(`ijt_base_logprobs`, see ijt_local/serve/logprobs.py). Every response carries llama.cpp's `timings`.

FastAPI validates the body; every refusal is an OpenAI-style {"error": {...}} with a 4xx status naming the
field, an unknown field included: a parameter is applied or refused, never dropped.
"""

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from ..errors import UserError
from ..runtime.grammar import gbnf_grammar, json_object_grammar, json_schema_grammar
from ..runtime.scores import MAX_PENALTY, RequestScores
from ..runtime.session import SamplingParams
from ..runtime.token_logprobs import MAX_TOP
from .engine import Event
from .logprobs import base_logprobs, chat_logprobs, completion_logprobs, prompt_choices
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .spec_engines import BusyError, ServedModel, SpecEngines

STATIC = files("ijt_local.serve") / "static"
MAX_CHOICES = 16  # the largest `n`: each choice is a sequence of its own in the engine


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class Completion(BaseModel):
    """What both endpoints take. Any other field is refused with a 400 naming it: a parameter a client
    sends is applied or refused, never dropped (the extensions are marked)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)  # extension (llama.cpp, vLLM): 0 = off
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)  # extension (llama.cpp, vLLM): 0 = off
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    presence_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    frequency_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    logit_bias: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None  # token id -> bias, ±100 at most
    response_format: ResponseFormat | None = None  # OpenAI's on chat; an extension on /v1/completions
    grammar: str | None = None  # extension (llama.cpp): a GBNF grammar the reply must follow
    user: str | None = None  # OpenAI's end-user id: accepted, not used
    ijt_rules: str | None = None  # extension: "off", or rule names such as "eos,uniform"


class ChatRequest(Completion):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP)


class CompletionRequest(Completion):
    prompt: str | list[str] | list[int] | list[list[int]]  # text or token ids; one prompt a request
    max_tokens: int | None = Field(default=16, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP)
    echo: bool = False


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    content: str
    add_special: bool = False  # the model's BOS when it adds one
    parse_special: bool = True  # special-token text (`<start_of_turn>`) as its token
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[int]


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
    app.state.metrics = Metrics(app.state.served)
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


def refused(request: Request, status: int, body: dict) -> JSONResponse:
    request.app.state.metrics.refused.labels(str(status)).inc()
    return JSONResponse(body, status_code=status)


async def api_error(request: Request, exc: APIError):
    kind = "authentication_error" if exc.status == 401 else "invalid_request_error"
    return refused(request, exc.status, error_body(exc.message, kind, exc.code, exc.param))


async def invalid_request(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return refused(request, 400, error_body(f"the body is not valid JSON ({reason})".replace(" ()", "")))
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = "unsupported parameter (ijt-local applies every parameter it takes and refuses the others)"
    return refused(request, 400, error_body(f"{where}: {message}" if where else message, param=where or None))


async def http_error(request: Request, exc: HTTPException):
    return refused(request, exc.status_code, error_body(str(exc.detail)))


KEYED = ("/v1/", "/tokenize", "/detokenize")  # what --api-key guards (the page, /health and /metrics stay open)


async def check_key(request: Request, call_next):
    api_key = served_of(request).api_key
    if api_key and request.url.path.startswith(KEYED):
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):  # constant time
            return refused(
                request,
                401,
                error_body(
                    "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error", "invalid_api_key"
                ),
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


# ---- the page, health, models, metrics and tokens ------------------------------------------------------


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


@router.get("/metrics")
async def metrics(request: Request):
    return Response(request.app.state.metrics.text(), media_type=METRICS_CONTENT_TYPE)


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


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request):
    """llama.cpp's server's shape: {"tokens": [id, ...]}, or with `with_pieces` [{"id", "piece"}, ...] where
    a piece that is not whole UTF-8 (part of a character) is its list of bytes."""
    session = (await pick(request, body.model)).engine.session
    add_bos = body.add_special and session.adds_bos()
    tokens = session.tokenize(body.content, add_bos=add_bos, special=body.parse_special)
    if not body.with_pieces:
        return {"tokens": tokens}
    pieces = []
    for token in tokens:
        raw = session.token_bytes(token, special=True)
        try:
            piece = raw.decode("utf-8")
        except UnicodeDecodeError:
            piece = list(raw)
        pieces.append({"id": token, "piece": piece})
    return {"tokens": pieces}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request):
    session = (await pick(request, body.model)).engine.session
    bad = outside_vocabulary(body.tokens, session.n_vocab)
    if bad is not None:
        raise APIError(400, f"tokens: {bad} is not a token id (0 to {session.n_vocab - 1})", param="tokens")
    return {"content": session.detokenize(body.tokens)}


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


def logit_bias_of(body: Completion, n_vocab: int) -> dict[int, float]:
    bias = {}
    for key, value in (body.logit_bias or {}).items():
        if not key.strip().isdigit() or not 0 <= int(key) < n_vocab:
            raise APIError(
                400, f"logit_bias: {key!r} is not a token id of this model (0 to {n_vocab - 1})", param="logit_bias"
            )
        bias[int(key)] = value
    return bias


def grammar_of(body: Completion, session):
    """The grammar a request asks for (`response_format` or `grammar`), compiled; None for none."""
    fmt = body.response_format
    if fmt is not None and fmt.type != "text" and body.grammar is not None:
        raise APIError(400, "grammar: give either response_format or grammar, not both", param="grammar")
    try:
        if body.grammar is not None:
            return gbnf_grammar(session, body.grammar)
    except UserError as exc:
        raise APIError(400, f"grammar: {exc}", param="grammar") from None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return json_object_grammar(session)
    if fmt.json_schema is None:
        raise APIError(400, "response_format.json_schema: required with type json_schema", param="response_format")
    try:
        return json_schema_grammar(session, fmt.json_schema.schema_, strict=bool(fmt.json_schema.strict))
    except UserError as exc:
        where = "response_format.json_schema.schema"
        raise APIError(400, f"{where}: {exc}", param="response_format") from None


@dataclass
class Jobs:
    """A request's choices in its engine (`n` of them), and one queue of (choice index, event)."""

    requests: list
    events: asyncio.Queue

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()

    @property
    def prompt(self) -> list[int]:
        return self.requests[0].prompt


async def open_jobs(served: ServedModel, body: Completion, conversation, **submit) -> Jobs:
    """Queue a request's `n` choices on its model's engine, each seeded apart (seed, seed + 1, ...). The
    prompt is tokenized and any grammar compiled in a worker thread: a huge one must not stall the other
    requests' streams."""
    try:
        rules = served.rules_for(body.ijt_rules)
    except UserError as exc:
        raise APIError(400, f"ijt_rules: {exc}", param="ijt_rules") from None
    session = served.engine.session
    bias = logit_bias_of(body, session.n_vocab)
    grammar = await asyncio.to_thread(grammar_of, body, session)
    scores = RequestScores.make(bias, body.presence_penalty, body.frequency_penalty, grammar)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)

    def report(index):
        return lambda event: loop.call_soon_threadsafe(events.put_nowait, (index, event))

    def queue_all():
        requests = []
        try:
            for index in range(body.n):
                sampling = SamplingParams(body.temperature, body.top_p, body.top_k, seed + index, body.min_p)
                requests.append(
                    served.engine.submit(
                        conversation,
                        report(index),
                        sampling=sampling,
                        rules=rules,
                        stop=tuple(s for s in stop if s),
                        stream=body.stream,
                        scores=scores,
                        **submit,
                    )
                )
        except UserError:
            for request in requests:
                request.cancel()
            raise
        return requests

    try:
        requests = await asyncio.to_thread(queue_all)
    except UserError as exc:
        param = "messages" if isinstance(body, ChatRequest) else "prompt"
        raise APIError(400, str(exc), code="context_length_exceeded", param=param) from None
    return Jobs(requests, events)


async def last_events(request: Request, jobs: Jobs) -> list[Event]:
    """A request not streamed: each choice's engine reports once, at the end."""
    finals: dict[int, Event] = {}
    while len(finals) < len(jobs.requests):
        try:
            index, event = await asyncio.wait_for(jobs.events.get(), timeout=0.5)
            finals[index] = event
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                jobs.cancel()
                raise APIError(499, "client closed the connection") from None
    return [finals[i] for i in range(len(jobs.requests))]


def streamed(jobs: Jobs, first: list[dict], chunk, finished):
    """Server-sent events: `first`, then chunk(index, event) per engine event, then [DONE] once every
    choice has finished. The chunk of the last choice to finish also carries finished(events) (timings,
    and usage when asked)."""

    async def stream():
        try:
            for payload in first:
                yield {"data": json.dumps(payload)}
            finals: dict[int, Event] = {}
            while len(finals) < len(jobs.requests):
                index, event = await jobs.events.get()
                if event.finish_reason:
                    finals[index] = event
                if event.delta or event.choices or event.prompt_choices or event.finish_reason:
                    payload = chunk(index, event)
                    if len(finals) == len(jobs.requests):
                        payload |= finished([finals[i] for i in range(len(finals))])
                    yield {"data": json.dumps(payload)}
            yield {"data": "[DONE]"}
        finally:
            jobs.cancel()  # a client that went away frees its slots at the next step

    return EventSourceResponse(stream(), ping=15)


def failed(events: list[Event]) -> JSONResponse | None:
    event = next((e for e in events if e.finish_reason == "error"), None)
    if event is None:
        return None
    return JSONResponse(error_body(event.error or "generation failed", "server_error"), status_code=500)


def record(request: Request, model: str, endpoint: str, events: list[Event], scoring_only: bool = False) -> None:
    metrics = request.app.state.metrics
    metrics.requests.labels(model, endpoint).inc()
    for n, event in enumerate(events):
        prompt = event.prompt_tokens if n == 0 else 0  # the prompt once per request, as usage counts it
        metrics.finished(model, event, 0 if scoring_only else event.completion_tokens, prompt)


def note_of(event: Event) -> dict:
    return {"ijt_note": event.note} if event.note else {}


# ---- the completions ------------------------------------------------------------------------------


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    top = (body.top_logprobs or 0) if body.logprobs else None
    served = await pick(request, body.model)
    jobs = await open_jobs(
        served,
        body,
        [m.model_dump(exclude_none=True) for m in body.messages],
        max_tokens=body.max_completion_tokens or body.max_tokens,
        logprobs=top,
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

    def payload(choices: list[dict], kind: str = "chat.completion.chunk", **extra) -> dict:
        body = {"id": reply_id, "object": kind, "created": created, "model": served.name, "choices": choices}
        return body | extra

    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def chunk(index: int, event: Event) -> dict:
            delta = {"content": event.delta} if event.delta else {}
            choice = {
                "index": index,
                "delta": delta,
                **logprob_fields(event),
                "finish_reason": finish_of(event) if event.finish_reason else None,
            }
            return payload([choice | note_of(event)])

        def finished(events: list[Event]) -> dict:
            record(request, served.name, "chat", events)
            usage = {"usage": usage_of(events)} if include_usage else {}
            return usage | {"timings": timings_of(events)}

        first = [
            payload([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for i in range(body.n)
        ]
        return streamed(jobs, first, chunk, finished)

    events = await last_events(request, jobs)
    record(request, served.name, "chat", events)
    error = failed(events)
    if error is not None:
        return error
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": event.text},
            **logprob_fields(event),
            "finish_reason": finish_of(event),
        }
        | note_of(event)
        for index, event in enumerate(events)
    ]
    return payload(choices, "chat.completion", usage=usage_of(events), timings=timings_of(events))


def one_prompt(body: CompletionRequest, n_vocab: int) -> str | list[int]:
    """The request's prompt: its text, or its token ids (as evaluation harnesses send them, tokenized by
    the model's own tokenizer), each checked against the vocabulary."""
    prompt = body.prompt
    if isinstance(prompt, list) and not (prompt and all(isinstance(token, int) for token in prompt)):
        if len(prompt) != 1:
            raise APIError(400, f"prompt: one prompt per request (got a list of {len(prompt)})", param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, list):
        outside = outside_vocabulary(prompt, n_vocab)
        if not prompt or outside is not None:
            what = f"token id {outside} is not in the vocabulary (0 to {n_vocab - 1})" if prompt else "no tokens"
            raise APIError(400, f"prompt: {what}", param="prompt")
    return prompt


def outside_vocabulary(tokens: list[int], n_vocab: int) -> int | None:
    """The first of `tokens` that is no token id of a `n_vocab`-token vocabulary, or None."""
    return next((token for token in tokens if not 0 <= token < n_vocab), None)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens: 0 only with echo (scoring the prompt)", param="max_tokens")
    scoring_only = body.max_tokens == 0
    served = await pick(request, body.model)
    prompt = one_prompt(body, served.engine.session.n_vocab)
    prompt_text = prompt if isinstance(prompt, str) else served.engine.session.detokenize(prompt)
    jobs = await open_jobs(
        served,
        body,
        prompt,
        max_tokens=1 if scoring_only else body.max_tokens,
        logprobs=body.logprobs,
        prompt_logprobs=body.logprobs if body.echo and body.logprobs is not None else None,
    )
    session = served.engine.session
    reply_id, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

    def text_and_logprobs(event: Event, offset: int) -> tuple[str, dict | None]:
        """This event's text (the echoed prompt first) and its legacy logprobs, offsets from `offset`."""
        text, choices = ("", []) if scoring_only else (event.delta, event.choices)
        if event.prompt_choices is not None or (body.echo and body.logprobs is None and offset == 0):
            text = prompt_text + text
            if event.prompt_choices is not None:
                choices = prompt_choices(session, jobs.prompt, event.prompt_choices) + choices
        if body.logprobs is None:
            return text, None
        return text, completion_logprobs(session, choices, offset)

    def payload(choices: list[dict], **extra) -> dict:
        body = {"id": reply_id, "object": "text_completion", "created": created, "model": served.name}
        return body | {"choices": choices} | extra

    def choice(index: int, text: str, logprobs: dict | None, event: Event) -> dict:
        finish = ("length" if scoring_only else finish_of(event)) if event.finish_reason else None
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish} | note_of(event)

    if body.stream:
        offsets = [0] * body.n
        include_usage = body.stream_options is not None and body.stream_options.include_usage

        def chunk(index: int, event: Event) -> dict:
            text, logprobs = text_and_logprobs(event, offsets[index])
            offsets[index] += len(text)
            return payload([choice(index, text, logprobs, event)])

        def finished(events: list[Event]) -> dict:
            record(request, served.name, "completions", events, scoring_only)
            usage = {"usage": usage_of(events, scoring_only)} if include_usage else {}
            return usage | {"timings": timings_of(events, scoring_only)}

        return streamed(jobs, [], chunk, finished)

    events = await last_events(request, jobs)
    record(request, served.name, "completions", events, scoring_only)
    error = failed(events)
    if error is not None:
        return error
    choices = []
    for index, event in enumerate(events):
        event.delta = event.text
        text, logprobs = text_and_logprobs(event, 0)
        choices.append(choice(index, text, logprobs, event))
    return payload(choices, usage=usage_of(events, scoring_only), timings=timings_of(events, scoring_only))


def finish_of(event: Event) -> str:
    return "stop" if event.finish_reason == "error" else event.finish_reason


def usage_of(events: list[Event], scoring_only: bool = False) -> dict:
    """OpenAI's usage: the prompt counted once, the completions of every choice."""
    prompt = events[0].prompt_tokens
    completion = 0 if scoring_only else sum(event.completion_tokens for event in events)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def timings_of(events: list[Event], scoring_only: bool = False) -> dict:
    """llama.cpp's server's `timings` (and `queue_ms`): the prompt's prefill (to the first token, the
    slowest choice's), then the decode steps after it; tokens/s over those steps."""
    timings = [event.timings for event in events if event.timings is not None]
    if not timings:
        return {}
    prompt_n = events[0].prompt_tokens
    prompt_s = max(t.prompt for t in timings)
    decode_s = max(t.decode for t in timings)
    predicted_n = 0 if scoring_only else sum(event.completion_tokens for event in events)
    steps = 0 if scoring_only else sum(max(event.completion_tokens - 1, 0) for event in events)
    return {
        "queue_ms": round(max(t.queue for t in timings) * 1000, 3),
        "prompt_n": prompt_n,
        "prompt_ms": round(prompt_s * 1000, 3),
        "prompt_per_second": round(prompt_n / prompt_s, 3) if prompt_s > 0 else None,
        "predicted_n": predicted_n,
        "predicted_ms": round(decode_s * 1000, 3),
        "predicted_per_second": round(steps / decode_s, 3) if decode_s > 0 and steps else None,
    }


def pick_model(models: dict[str, ServedModel], name: str | None) -> ServedModel:
    if name in models:
        return models[name]
    if name is None and len(models) == 1:
        return next(iter(models.values()))
    served = ", ".join(models)
    raise APIError(404, f"model {name!r} is not served here (served: {served})", code="model_not_found", param="model")
