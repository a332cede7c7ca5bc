"""MOS server under load and attack: concurrent raters, duplicates, kill -9, blinding, path traversal, bad input."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from speechlm.mos.session import CreateOptions, Session, create_session
from tests.test_mos_design import make_systems

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ["sysalphasecret", "sysbetasecret", "sysgammasecret"]
N_LOAD = 20  # raters 0-19 load-test; 20-24 security tests; 25 never passes the check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``speechlm.mos.cli mos serve`` in a subprocess on 127.0.0.1, so a test can kill -9 it."""

    def __init__(self, session_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A log file, not a pipe: an undrained pipe would stall the server once it fills.
        self.log = session_dir.parent / f"server-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "speechlm.mos.cli", "mos", "serve", str(session_dir),
                                          "--host", "127.0.0.1", "--port", str(self.port)], cwd=REPO,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown hooks, the worst case for durability
        self.proc.wait(timeout=10)


def audio_urls(session: Session, token: str, entry: dict) -> list[str]:
    return [f"/api/r/{token}/audio/{n}" for n in entry["shown"]]


def trial_seconds(session: Session, entry: dict) -> float:
    return sum(session.plan.stimuli[n].duration for n in entry["shown"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An ACR session (3 systems, 6 test sentences) with 26 invites, served; raters 0-24 pass the check."""
    root = tmp_path_factory.mktemp("mos_server")
    specs = make_systems(root / "in", names=SYSTEMS, n_utts=7, seconds=0.4, rates=(16000,))
    session, tokens = create_session(specs, root / "session",
                                     CreateOptions(reference=SYSTEMS[0], raters=N_LOAD + 6, seed=2))
    server = ServerProcess(session.directory)
    try:
        _pass_checks(session, tokens[:-1], server)
        yield session, tokens, server
    finally:
        server.kill()


def _pass_checks(session: Session, tokens: list[str], server: ServerProcess) -> None:
    """Start and pass the listening check for ``tokens``: fetch every clip, wait once, answer."""
    checks = {c.name: c.answer for c in session.checks}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        pending = {}
        for token in tokens:
            assert c.post(f"/api/r/{token}/start", json={}).status_code == 200
            clips = c.get(f"/api/r/{token}/check").json()["clips"]
            for clip in clips:
                assert c.get(clip["url"]).status_code == 200
            pending[token] = clips
        longest = max(sum(c_.duration for c_ in session.checks if c_.name in {x["name"] for x in clips})
                      for clips in pending.values())
        time.sleep(session.min_listen_fraction * longest + 0.1)
        for token, clips in pending.items():
            res = c.post(f"/api/r/{token}/check", json={"answers": {x["name"]: checks[x["name"]] for x in clips}})
            assert res.json()["passed"], res.text


def test_twenty_raters_at_once_lose_nothing(served):
    session, tokens, server = served
    store = session.store()
    raters = {r.token: r for r in store.raters()}
    load = tokens[:N_LOAD]
    value = lambda idx, j: 1 + (idx * 7 + j) % 5  # noqa: E731  what rater idx answers on its item j
    wait = session.min_listen_fraction * max(trial_seconds(session, e) for t in load for e in raters[t].order)
    listened, go = threading.Barrier(N_LOAD), threading.Barrier(N_LOAD + 1)
    statuses: list[int] = []
    lock = threading.Lock()

    def post(client: httpx.Client, token: str, body: dict) -> None:
        code = client.post(f"/api/r/{token}/rate", json=body).status_code
        with lock:
            statuses.append(code)

    def rater(token: str) -> None:
        """One rater's browser: fetch the clips, listen, then rate every item as fast as the server allows."""
        r = raters[token]
        with httpx.Client(base_url=server.url, timeout=60) as c, httpx.Client(base_url=server.url, timeout=60) as c2:
            for e in r.order:
                for u in audio_urls(session, token, e):
                    assert c.get(u).status_code == 200
            listened.wait()
            time.sleep(wait + 0.1)
            go.wait()  # all 20 start submitting at the same moment
            for j, e in enumerate(r.order):
                body = {"item_id": e["item"], "value": value(r.idx, j), "listened_s": 1.0}
                if j == 0:  # the same rating sent twice at once, on two connections
                    twin = threading.Thread(target=post, args=(c2, token, body))
                    twin.start()
                    post(c, token, body)
                    twin.join()
                else:
                    post(c, token, body)

    threads = [threading.Thread(target=rater, args=(t,)) for t in load]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    expected = sum(len(raters[t].order) for t in load)
    assert statuses.count(200) == expected and statuses.count(409) == N_LOAD, statuses
    rows = [x for x in store.ratings() if x.rater < N_LOAD]
    pairs = {(x.rater, x.item_id) for x in rows}
    lost, duplicates = expected - len(pairs), len(rows) - len(pairs)
    print(f"\nLOAD: raters={N_LOAD} ratings={expected} (+{N_LOAD} concurrent duplicate submissions) "
          f"stored={len(rows)} lost={lost} duplicates={duplicates} time={seconds:.2f}s "
          f"({expected / seconds:.0f} ratings/s)")
    assert lost == 0 and duplicates == 0
    by_idx = {r.idx: r for r in raters.values()}
    for x in rows:
        j = [e["item"] for e in by_idx[x.rater].order].index(x.item_id)
        assert x.value == value(x.rater, j)
        assert x.listen_s >= session.min_listen_fraction * trial_seconds(session, by_idx[x.rater].order[j])
    with httpx.Client(base_url=server.url) as c:
        for t in load:
            state = c.get(f"/api/r/{t}/state").json()
            assert state["phase"] == "done" and state["progress"]["done"] == len(raters[t].order)
            assert c.post(f"/api/r/{t}/rate", json={"item_id": raters[t].order[0]["item"], "value": 3}
                          ).status_code == 409


def test_kill_and_restart_keeps_ratings(served):
    session, tokens, _ = served
    token = tokens[24]
    order = session.store().rater(token).order
    first = ServerProcess(session.directory)
    try:
        with httpx.Client(base_url=first.url, timeout=30) as c:
            for e in order[:3]:
                for u in audio_urls(session, token, e):
                    c.get(u)
            time.sleep(session.min_listen_fraction * max(trial_seconds(session, e) for e in order[:3]) + 0.1)
            for e in order[:3]:
                assert c.post(f"/api/r/{token}/rate", json={"item_id": e["item"], "value": 4}).status_code == 200
    finally:
        first.kill()  # right after the third acknowledgement
    second = ServerProcess(session.directory)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as c:
            assert c.get(f"/api/r/{token}/state").json()["progress"]["done"] == 3
            nxt = c.get(f"/api/r/{token}/next").json()["item"]
            assert nxt["id"] == order[3]["item"] and nxt["position"] == 4  # resumes where it stopped
            assert c.post(f"/api/r/{token}/rate", json={"item_id": order[0]["item"], "value": 1}).status_code == 409
    finally:
        second.kill()
    rows = [x for x in session.store().ratings() if x.item_id in {e["item"] for e in order[:3]}
            and x.rater == session.store().rater(token).idx]
    assert [x.value for x in rows] == [4, 4, 4]


def raw_get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (httpx would normalise the dot segments away)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, body


def test_path_traversal_and_foreign_files_refused(served):
    session, tokens, server = served
    store = session.store()
    mine, other = store.rater(tokens[20]), store.rater(tokens[21])
    own = {n for e in mine.order for n in e["shown"]}
    foreign = next(n for e in other.order for n in e["shown"] if n not in own)
    check_clip = session.checks[0].name  # the check is passed: its clips are no longer served
    t = tokens[20]
    paths = [f"/api/r/{t}/audio/../../session.json", f"/api/r/{t}/audio/..%2F..%2Fsession.json",
             f"/api/r/{t}/audio/%2e%2e%2f%2e%2e%2fsession.json", f"/api/r/{t}/audio/%2e%2e/%2e%2e/session.json",
             f"/api/r/{t}/audio/..%5c..%5csession.json", f"/api/r/{t}/audio/..", f"/api/r/{t}/audio/%2e%2e",
             f"/api/r/{t}/audio/ratings.sqlite", f"/api/r/{t}/audio/%2Fetc%2Fpasswd", f"/api/r/{t}/audio//etc/passwd",
             f"/api/r/{t}/audio/{foreign}", f"/api/r/{t}/audio/{check_clip}",
             f"/api/r/{t}/audio/{foreign[:-4]}.WAV", "/static/../session.json", "/static/%2e%2e%2fsession.json",
             "/static/..%2F..%2F..%2Fpyproject.toml", "/static/rater.html", "/session.json", "/ratings.sqlite",
             f"/stimuli/{foreign}", "/../session.json", "//etc/passwd", "/api/r/..%2F..%2Fsession.json/state"]
    secrets_ = [s.encode() for s in SYSTEMS] + [b"session_id", b"SQLite", b"root:", b"[project]"]
    for path in paths:
        status, body = raw_get(server, path)
        assert 400 <= status < 500, (path, status)
        assert not any(s in body for s in secrets_), path
    assert raw_get(server, f"/api/r/{t}/audio/{next(iter(own))}")[0] == 200


def test_rater_sees_nothing_that_unblinds(served):
    session, tokens, server = served
    t = tokens[20]
    with httpx.Client(base_url=server.url) as c:
        responses = [c.get(f"/r/{t}"), c.get("/static/rater.js"), c.get("/static/rater.css"),
                     c.get(f"/api/r/{t}/state"), c.get(f"/api/r/{t}/next")]
        item = responses[-1].json()["item"]
        responses += [c.get(s["url"]) for s in item["stimuli"]]
    leaks = [s.encode() for s in SYSTEMS] + [f"uttid{i:02d}".encode() for i in range(7)]
    leaks += [str(session.directory).encode(), b"held_out", b"gold", b"trap", b"sqlite"]
    for res in responses:
        assert res.status_code == 200
        blob = res.content + b"".join(k.encode() + v.encode() for k, v in res.headers.items())
        assert not any(x in blob for x in leaks), (res.url, [x for x in leaks if x in blob])
        assert res.headers["referrer-policy"] == "no-referrer" and "server" not in res.headers
    assert set(item) == {"id", "position", "training", "stimuli", "reference"}
    assert all(set(s) == {"name", "label", "url"} for s in item["stimuli"])
    assert "content-disposition" not in {k.lower() for r in responses for k in r.headers}


def test_bad_ratings_rejected_with_clear_json(served):
    session, tokens, server = served
    t = tokens[22]
    order = session.store().rater(t).order
    trap = next(e for e in order if session.plan.trials[e["item"]].kind == "trap")
    item = order[0]["item"]
    with httpx.Client(base_url=server.url) as c:
        def post(body, **kw):
            res = c.post(f"/api/r/{t}/rate", json=body, **kw) if "content" not in kw else \
                c.post(f"/api/r/{t}/rate", **kw)
            assert res.headers["content-type"] == "application/json", res.text
            return res.status_code, res.json()["error"]

        assert post({"item_id": item, "value": 3}) == (409, "play every sample before answering "
                                                             "(not yet played: Sample)")
        for u in audio_urls(session, t, trap):
            c.get(u)
        status, msg = post({"item_id": trap["item"], "value": 5})  # the 4 s trap clip answered at once
        assert status == 422 and "listen to them completely" in msg
        for bad in (0, 6, 4.5, True, "5", None, [5], {"x": 1}, -1):
            status, msg = post({"item_id": item, "value": bad})
            assert status == 422 and "integer from 1 to 5" in msg, bad
        assert post({"item_id": item}) == (422, "missing field 'value'")
        for bad_item in ("nope", 123, None, "../session"):
            assert post({"item_id": bad_item, "value": 3})[0] == 404
        assert post({"item_id": item, "value": 3, "listened_s": -1})[0] == 422
        headers = {"content-type": "application/json"}
        assert post(None, content=b"{not json", headers=headers)[0] == 400
        assert post(None, content=b"[1, 2]", headers=headers) == (400, "request body must be a JSON object")
        assert post(None, content=b'{"item_id": "%s", "value": NaN}' % item.encode(), headers=headers)[0] == 400
        assert post(None, content=b"value=5", headers={"content-type": "application/x-www-form-urlencoded"})[0] == 415
        assert post(None, content=b"{" + b" " * 70000 + b"}", headers=headers)[0] == 413
    assert session.store().rated_items(session.store().rater(t).idx) == set()  # nothing slipped through


def test_tokens_are_isolated(served):
    session, tokens, server = served
    store = session.store()
    a, b = store.rater(tokens[23]), store.rater(tokens[21])
    shared = a.order[0]["item"]  # training items are common to all raters
    only_b = next(e["item"] for e in b.order if e["item"] not in {x["item"] for x in a.order})
    with httpx.Client(base_url=server.url) as c:
        for t, r in ((tokens[23], a), (tokens[21], b)):
            for u in audio_urls(session, t, next(e for e in r.order if e["item"] == shared)):
                c.get(u)
        time.sleep(session.min_listen_fraction * 0.4 + 0.1)
        assert c.post(f"/api/r/{tokens[21]}/rate", json={"item_id": shared, "value": 4}).status_code == 200
        # A's token cannot reach B's item, and A's answer to the shared item is A's own row.
        assert c.post(f"/api/r/{tokens[23]}/rate", json={"item_id": only_b, "value": 1}).status_code == 404
        assert c.post(f"/api/r/{tokens[23]}/rate", json={"item_id": shared, "value": 1}).status_code == 200
        assert c.post(f"/api/r/{tokens[21]}/rate", json={"item_id": shared, "value": 2}).status_code == 409
        near = tokens[21][:-1] + ("B" if tokens[21].endswith("A") else "A")  # one character off (tokens are random)
        for bad in ("x" * 24, near, "", "../" + tokens[21]):
            assert c.get(f"/api/r/{bad}/state").status_code in (403, 404)
            res = c.post(f"/api/r/{bad}/rate", json={"item_id": shared, "value": 5})
            assert res.status_code in (403, 404) and "error" in res.json()
        assert c.get(f"/r/{'y' * 24}").status_code == 404
    values = {(x.rater, x.item_id): x.value for x in store.ratings()}
    assert values[(b.idx, shared)] == 4 and values[(a.idx, shared)] == 1 and (a.idx, only_b) not in values


def test_check_is_required_and_limited(served):
    session, tokens, server = served
    t = tokens[25]
    store = session.store()
    r = store.rater(t)
    with httpx.Client(base_url=server.url) as c:
        assert c.get(f"/api/r/{t}/next").status_code == 403
        assert c.get(f"/api/r/{t}/check").status_code == 403  # instructions first
        c.post(f"/api/r/{t}/start", json={})
        res = c.post(f"/api/r/{t}/rate", json={"item_id": r.order[0]["item"], "value": 3})
        assert res.status_code == 403 and "listening check" in res.json()["error"]
        assert c.get(f"/api/r/{t}/audio/{r.order[0]['shown'][0]}").status_code == 200  # own clip: fine
        clips = c.get(f"/api/r/{t}/check").json()["clips"]
        wrong = {x["name"]: next(o for o in x["options"] if o != session.checks[0].answer) for x in clips}
        res = c.post(f"/api/r/{t}/check", json={"answers": wrong})
        assert res.status_code == 409 and "play every sample" in res.json()["error"]  # no attempt spent
        for _ in range(3):
            store.record_check(r.idx, False)
        state = c.get(f"/api/r/{t}/state").json()
        assert state["phase"] == "locked" and state["check_attempts_left"] == 0
        assert c.get(f"/api/r/{t}/check").status_code == 403
        assert c.get(f"/api/r/{t}/next").status_code == 403
