"""The rater web app (Starlette + uvicorn): invite-link pages, listening check, blinded audio, validated ratings."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from speechlm.mos import design
from speechlm.mos.session import MAX_CHECK_ATTEMPTS, Session, load_session
from speechlm.mos.store import AlreadyRated, Rater

STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {"rater.js": "text/javascript; charset=utf-8", "rater.css": "text/css; charset=utf-8"}
NAME_RE = re.compile(r"[0-9a-f]{16}\.wav")
MAX_BODY = 64 * 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # The invite token is in the URL: never hand it to another site in a Referer header.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; "
                                 b"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid rating")


class MosApp:
    """Request handlers bound to one session; every decision about a rater is made from the database."""

    def __init__(self, session: Session):
        self.session = session
        self.store = session.store()
        self.plan = session.plan
        self.checks = {c.name: c for c in session.checks}
        self.durations = {n: s.duration for n, s in self.plan.stimuli.items()}
        self.durations.update({c.name: c.duration for c in session.checks})
        self.stimuli_dir = session.stimuli_dir.resolve()

    # --- state -----------------------------------------------------------------------------------
    def rater(self, token: str) -> Rater:
        r = self.store.rater(token) if 8 <= len(token) <= 64 else None
        if r is None:
            raise ApiError(404, "unknown invite link")
        return r

    def state(self, r: Rater) -> dict:
        done = len(self.store.rated_items(r.idx))
        total = len(r.order)
        if r.started is None:
            phase = "intro"
        elif r.check_passed is None:
            phase = "locked" if r.check_attempts >= MAX_CHECK_ATTEMPTS else "check"
        else:
            phase = "done" if done >= total else "rating"
        scale = self.session.scale
        out = {"phase": phase, "test_type": self.session.test_type, "progress": {"done": done, "total": total},
               "scale": {"kind": scale.kind, "values": list(scale.values), "labels": list(scale.labels),
                         "question": scale.question},
               "check_attempts_left": max(0, MAX_CHECK_ATTEMPTS - r.check_attempts)}
        if phase == "done":  # a code a crowdsourcing platform can ask for; it reveals nothing about the test
            out["completion_code"] = hashlib.sha256(f"{self.session.session_id}:{r.token}".encode()).hexdigest()[:10]
        return out

    def _audio_url(self, r: Rater, name: str) -> str:
        return f"/api/r/{r.token}/audio/{name}"

    def _require(self, r: Rater, phase: str) -> dict:
        st = self.state(r)
        if st["phase"] != phase:
            messages = {"intro": "read the instructions and press start first",
                        "check": "pass the listening check first",
                        "locked": "the listening check failed too often; this invite link is closed",
                        "done": "you have rated every item already; thank you", "rating": "the check is already passed"}
            raise ApiError(403 if st["phase"] in ("intro", "check", "locked") else 409, messages[st["phase"]])
        return st

    def _listened(self, r: Rater, names: list[str], labels: list[str]) -> float:
        """Seconds since the first of ``names`` was fetched; refuses answers given faster than the audio plays."""
        served = self.store.served(r.idx, names)
        missing = [lab for n, lab in zip(names, labels) if n not in served]
        if missing:
            raise ApiError(409, f"play every sample before answering (not yet played: {', '.join(missing)})")
        elapsed = time.time() - min(served.values())
        need = self.session.min_listen_fraction * sum(self.durations[n] for n in names)
        if elapsed < need:
            raise ApiError(422, f"answered {elapsed:.1f} s after the audio was first loaded, but the samples last "
                                f"{need / self.session.min_listen_fraction:.1f} s; listen to them completely")
        return elapsed

    # --- handlers (run in the thread pool) --------------------------------------------------------
    def start(self, r: Rater) -> dict:
        self.store.mark_started(r.idx)
        return self.state(self.rater(r.token))

    def get_check(self, r: Rater) -> dict:
        self._require(r, "check")
        names = r.pending_check
        if not names:  # a fresh pair of questions per attempt, so a retry cannot reuse an answer
            names = [secrets.choice([c.name for c in self.checks.values() if c.kind == kind])
                     for kind in ("beeps", "headphones")]
            self.store.set_pending_check(r.idx, names)
        return {"clips": [{"name": n, "url": self._audio_url(r, n), "question": self.checks[n].question,
                           "options": self.checks[n].options} for n in names]}

    def post_check(self, r: Rater, body: dict) -> dict:
        self._require(r, "check")
        names = r.pending_check
        if not names:
            raise ApiError(409, "no listening check is open; reload the page")
        answers = body.get("answers")
        if not isinstance(answers, dict) or set(answers) != set(names):
            raise ApiError(422, "answers must be an object with one answer per check question")
        for n in names:
            if isinstance(answers[n], bool) or answers[n] not in self.checks[n].options:
                raise ApiError(422, f"answer must be one of {self.checks[n].options}; got {answers[n]!r}")
        self._listened(r, names, [f"question {i + 1}" for i in range(len(names))])
        passed = all(answers[n] == self.checks[n].answer for n in names)
        left = MAX_CHECK_ATTEMPTS - self.store.record_check(r.idx, passed)
        message = "check passed" if passed else (
            f"not quite: please check your headphones and surroundings and try again ({left} attempts left)"
            if left > 0 else "the listening check failed too often; thank you for your time")
        return {"passed": passed, "attempts_left": max(left, 0), "message": message}

    def next_item(self, r: Rater) -> dict:
        st = self.state(r)
        if st["phase"] not in ("rating", "done"):
            self._require(r, "rating")
        rated = self.store.rated_items(r.idx)
        for pos, entry in enumerate(r.order):
            if entry["item"] in rated:
                continue
            trial = self.plan.trials[entry["item"]]
            labels = self._labels(len(entry["shown"]))
            item = {"id": entry["item"], "position": pos + 1, "training": trial.kind == "training",
                    "stimuli": [{"name": n, "label": lab, "url": self._audio_url(r, n)}
                                for n, lab in zip(entry["shown"], labels)],
                    "reference": {"url": self._audio_url(r, trial.reference)} if trial.reference else None}
            return {"done": False, "item": item, "progress": st["progress"]}
        return {"done": True, "item": None, "progress": st["progress"]}

    def _labels(self, n: int) -> list[str]:
        if self.session.test_type == "acr":
            return ["Sample"]
        if self.session.test_type in ("cmos", "ab"):
            return ["A", "B"]
        return [str(i + 1) for i in range(n)]

    def rate(self, r: Rater, body: dict) -> dict:
        self._require(r, "rating")
        item_id = body.get("item_id")
        entry = next((e for e in r.order if e["item"] == item_id), None) if isinstance(item_id, str) else None
        if entry is None:
            raise ApiError(404, "this item is not part of your test")
        if "value" not in body:
            raise ApiError(422, "missing field 'value'")
        trial = self.plan.trials[item_id]
        try:
            design.canonical_value(self.session.test_type, trial, entry["shown"], body["value"])
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        client_s = body.get("listened_s")
        if client_s is not None and (isinstance(client_s, bool) or not isinstance(client_s, (int, float))
                                     or not 0 <= client_s < 86400):
            raise ApiError(422, "listened_s must be a number of seconds")
        listen_s = self._listened(r, entry["shown"], self._labels(len(entry["shown"])))
        try:
            done = self.store.add_rating(r.idx, item_id, entry["shown"], body["value"], listen_s, client_s,
                                         len(r.order))
        except AlreadyRated as e:
            raise ApiError(409, str(e)) from None
        return {"ok": True, "progress": {"done": done, "total": len(r.order)}, "done": done >= len(r.order)}

    def audio_path(self, r: Rater, name: str) -> Path:
        allowed = {n for e in r.order for n in e["shown"]}
        allowed |= {self.plan.trials[e["item"]].reference for e in r.order} - {None}
        allowed |= set(r.pending_check or ())
        path = (self.stimuli_dir / name).resolve()
        # Only this rater's own clips, and only by their blinded names: nothing else in the folder is reachable.
        if not NAME_RE.fullmatch(name) or name not in allowed or path.parent != self.stimuli_dir or not path.is_file():
            raise ApiError(404, "no such audio file")
        self.store.mark_served(r.idx, name)
        return path


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


async def _body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send the request body as application/json")
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise ApiError(413, "request body too large")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def create_app(session_dir: str | Path) -> Starlette:
    """The ASGI app serving one session folder."""
    mos = MosApp(load_session(session_dir))
    page = (STATIC / "rater.html").read_bytes()

    def api(method_name: str, with_body: bool = False):
        async def endpoint(request: Request) -> Response:
            body = await _body(request) if with_body else None
            token = request.path_params["token"]

            def work() -> Any:
                r = mos.rater(token)
                return getattr(mos, method_name)(r, body) if with_body else getattr(mos, method_name)(r)
            return _json(await run_in_threadpool(work))
        return endpoint

    async def state(request: Request) -> Response:
        return _json(await run_in_threadpool(lambda: mos.state(mos.rater(request.path_params["token"]))))

    async def audio(request: Request) -> Response:
        token, name = request.path_params["token"], request.path_params["name"]
        path = await run_in_threadpool(lambda: mos.audio_path(mos.rater(token), name))
        return FileResponse(path, media_type="audio/wav", headers={"cache-control": "private, max-age=600"})

    async def rater_page(request: Request) -> Response:
        known = await run_in_threadpool(lambda: mos.store.rater(request.path_params["token"]) is not None)
        if not known:
            return HTMLResponse("<!doctype html><title>Listening test</title><p>This invite link is not valid.",
                                status_code=404)
        return Response(page, media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_TYPES:
            raise ApiError(404, "not found")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_TYPES[name])

    async def index(request: Request) -> Response:
        return PlainTextResponse("Listening test. Open the personal invite link you were given.")

    async def api_error(request: Request, exc: ApiError) -> Response:
        return _json({"error": exc.message}, exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _json({"error": exc.detail}, exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        return _json({"error": "internal server error"}, 500)

    routes = [
        Route("/", index),
        Route("/r/{token}", rater_page),
        Route("/static/{name}", static),
        Route("/api/r/{token}/state", state),
        Route("/api/r/{token}/start", api("start"), methods=["POST"]),
        Route("/api/r/{token}/check", api("get_check"), methods=["GET"]),
        Route("/api/r/{token}/check", api("post_check", True), methods=["POST"]),
        Route("/api/r/{token}/next", api("next_item")),
        Route("/api/r/{token}/rate", api("rate", True), methods=["POST"]),
        Route("/api/r/{token}/audio/{name}", audio),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error,
                                                       Exception: server_error})
    app.add_middleware(_SecurityHeaders)
    return app


class _SecurityHeaders:
    """Adds the security headers to every response, and no-store where a handler set no caching policy."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)
        await self.app(scope, receive, send_with_headers)


def serve(session_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    # No access log: request lines carry the raters' secret invite tokens.
    uvicorn.run(create_app(session_dir), host=host, port=port, access_log=False, server_header=False,
                log_level="info")


class BackgroundServer:
    """Serve a session from a thread (tests, notebooks): ``with BackgroundServer(dir) as srv: srv.url``."""

    def __init__(self, session_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        config = uvicorn.Config(create_app(session_dir), host=host, port=port, access_log=False,
                                server_header=False, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the MOS server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
