"""MOS rater UI in a real headless Chromium: check, listen, rate everything, resume after reload, report numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechlm.mos.analysis import analyze, write_report
from speechlm.mos.server import BackgroundServer
from speechlm.mos.session import CreateOptions, create_session, load_session
from tests.test_mos_design import make_systems

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/mos_browser.png")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SCORES = {"sysA": 5, "sysB": 2}  # what the simulated rater always answers for each system


def _wait_heard(page, selector: str) -> None:
    try:
        page.wait_for_selector(f'{selector}[data-heard="true"]', timeout=20000)
    except Exception as e:  # say what the page showed rather than only "timeout"
        raise AssertionError(f"audio never ended; page error: {page.text_content('#error')!r}") from e


def _next_screen(page, previous: str | None) -> None:
    page.wait_for_function(
        """prev => document.querySelector('#done') ||
                  (document.querySelector('.item') && document.querySelector('.item').dataset.item !== prev)""",
        arg=previous, timeout=20000)


def test_rater_completes_a_session_in_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    specs = make_systems(tmp_path / "in", names=list(SCORES), n_utts=5, seconds=0.6, rates=(16000,))
    session, tokens = create_session(specs, tmp_path / "session",
                                     CreateOptions(reference="sysA", raters=2, seed=4))
    trials, answers = session.plan.trials, {c.name: c.answer for c in session.checks}
    order = session.store().rater(tokens[0]).order
    total = len(order)

    with BackgroundServer(session.directory) as server, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(f"{server.url}/r/{tokens[0]}")
        page.click("#start")

        page.wait_for_selector("#check-submit")
        for i, box in enumerate(page.query_selector_all(".check")):
            name = box.get_attribute("data-name")
            assert page.is_disabled(f'input[name="check-{i}"] >> nth=0')  # answers wait for the sound
            box.query_selector("button.play").click()
            _wait_heard(page, f'.check[data-name="{name}"] button.play')
            page.check(f'input[name="check-{i}"][value="{answers[name]}"]')
        page.click("#check-submit")

        rated, previous, shot = 0, None, False
        while True:
            _next_screen(page, previous)
            if page.query_selector("#done"):
                break
            card = page.query_selector(".item")
            previous = card.get_attribute("data-item")
            trial = trials[previous]
            assert page.is_disabled("#submit") and page.is_disabled('input[name="rating"] >> nth=0')
            for button in card.query_selector_all("button.play"):
                button.click()
                _wait_heard(page, f'button.play[data-name="{button.get_attribute("data-name")}"]')
            if trial.kind == "test":
                value = SCORES[trial.condition]
            elif trial.expected:  # gold and trap items: the attentive answer
                value = trial.expected[-1]
            else:
                value = 3
            page.check(f'input[name="rating"][value="{value}"]')
            assert not page.is_disabled("#submit")
            if trial.kind == "test" and not shot:  # a rating screen with its answer chosen
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                shot = True
            page.click("#submit")
            rated += 1
            if rated == 3:  # leave and come back: the test resumes at item 4
                _next_screen(page, previous)
                page.reload()
                page.wait_for_selector(".item")
                assert page.text_content("#progress-text") == f"3 / {total}"
                assert page.get_attribute(".item", "data-item") == order[3]["item"]
                previous = None
        assert page.text_content("#progress-text") == f"{total} / {total}"
        assert len(page.text_content("#completion-code")) == 10
        browser.close()
    assert not errors, errors
    assert rated == total

    loaded = load_session(session.directory)
    report = analyze(loaded)
    by = {c.condition: c for c in report.conditions}
    assert report.included == [0]  # rater 1 never started
    assert {k: by[k].mean for k in SCORES} == SCORES and by["sysA"].ci95 == 0.0
    assert by["sysA"].n == by["sysB"].n == 2  # 4 test sentences, half each
    ratings = loaded.store().ratings()
    assert all(r.client_s and r.client_s > 0.5 for r in ratings)  # the page reported real playback
    write_report(loaded, tmp_path / "report")
    assert "| sysA | 5.00 | 0.00 |" in (tmp_path / "report" / "report.md").read_text()


MUSHRA_SCORES = {"sysB": 70, "hidden_reference": 100, "anchor_3.5k": 20, "anchor_7k": 45}


def test_pair_and_mushra_pages_in_chromium(tmp_path):
    """The A/B-pair (CMOS) and slider (MUSHRA) pages store what the rater set, in the order they were shown."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        for test, n_items in (("cmos", 2), ("mushra", 1)):
            specs = make_systems(tmp_path / test / "in", names=list(SCORES), n_utts=4, seconds=0.4, rates=(16000,))
            session, tokens = create_session(specs, tmp_path / test / "session",
                                             CreateOptions(test_type=test, reference="sysA", raters=1, seed=5))
            store = session.store()
            rater = store.rater(tokens[0])
            store.mark_started(rater.idx)  # the check flow is covered above; start at the first item
            store.record_check(rater.idx, True)
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            with BackgroundServer(session.directory) as server:
                page.goto(f"{server.url}/r/{tokens[0]}")
                previous = None
                for entry in rater.order[:n_items]:
                    _next_screen(page, previous)
                    previous = page.get_attribute(".item", "data-item")
                    assert previous == entry["item"]
                    buttons = page.query_selector_all(".item button.play[data-name]")  # not the reference
                    shown = [b.get_attribute("data-name") for b in buttons]
                    assert shown == entry["shown"]  # the page shows the per-rater order the server chose
                    if test == "mushra":
                        page.click("#play-reference")
                        _wait_heard(page, "#play-reference")
                    for name in shown:
                        page.click(f'button.play[data-name="{name}"]')
                        _wait_heard(page, f'button.play[data-name="{name}"]')
                    if test == "mushra":
                        for name in shown:
                            score = MUSHRA_SCORES[session.plan.stimuli[name].condition]
                            page.locator(f'input[type=range][data-name="{name}"]').evaluate(
                                "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
                                score)
                    else:
                        page.check('input[name="rating"][value="-2"]')
                    page.click("#submit")
                _next_screen(page, previous)
                assert page.text_content("#progress-text") == f"{n_items} / {len(rater.order)}"
                page.close()  # before the server stops: a request still in flight would be reset and logged
            assert not console, console
            stored = {r.item_id: r for r in store.ratings()}
            assert len(stored) == n_items
            for entry in rater.order[:n_items]:
                r = stored[entry["item"]]
                assert r.shown == entry["shown"]
                if test == "mushra":
                    assert r.value == {n: MUSHRA_SCORES[session.plan.stimuli[n].condition] for n in r.shown}
                else:
                    assert r.value == -2
        browser.close()
