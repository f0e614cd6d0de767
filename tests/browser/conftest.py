"""Headless Chromium against the real app: Debian's `chromium` driven by Playwright for Python.

Playwright cannot download its own browser here, so it launches `/usr/bin/chromium`; when that
is missing the session installs it with apt-get (CI runs on a clean machine, and these tests
must run there, not skip). The app is the real one, served by uvicorn on a free port in a thread
of this process, on a fresh SQLite file with the simulator: a thread rather than a subprocess so
a test can play the carrier (webhook handlers, the transfer feed) in the same process.

Set OUTBOUND_SCREENSHOTS=1 to save a screenshot of each page to docs/screenshots/.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
START_TIMEOUT_SECONDS = 20


def install_chromium() -> None:
    """apt-get install chromium chromium-driver (as root, or through sudo)."""
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        result = subprocess.run([*prefix, *command], env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        install_chromium()
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is still missing after apt-get install chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path: Path):
    # Module scope, not session: Playwright's sync API keeps an event loop running in this thread
    # until it stops, and later tests that call asyncio.run() would fail while it does.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveApp:
    base_url: str
    data_dir: Path
    engine: object

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="module")
def live_app(tmp_path_factory) -> Iterator[LiveApp]:
    import uvicorn

    from api.app import create_app
    from outbound.db import dispose_engines, ensure_schema, get_engine

    data_dir = tmp_path_factory.mktemp("browser")
    # MonkeyPatch.context, not the `monkeypatch` fixture: this fixture lives for the module.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OUTBOUND_DATA_DIR", str(data_dir))
        env.setenv("OUTBOUND_DATABASE_URL", f"sqlite:///{data_dir / 'outbound.db'}")
        env.setenv("OUTBOUND_TELEPHONY", "simulator")
        env.delenv("OUTBOUND_PUBLIC_URL", raising=False)
        engine = get_engine()
        ensure_schema(engine)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                                               timeout_graceful_shutdown=1))
        thread = threading.Thread(target=server.run, name="uvicorn-browser-tests", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {port} within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        try:
            yield LiveApp(base_url=f"http://127.0.0.1:{port}", data_dir=data_dir, engine=engine)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            dispose_engines()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot():
    """`screenshot(page, name)` saves docs/screenshots/NAME.png when OUTBOUND_SCREENSHOTS is set."""
    wanted = os.environ.get("OUTBOUND_SCREENSHOTS", "") not in ("", "0")
    if wanted:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, *, full_page: bool = True) -> None:
        if wanted:
            page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=full_page)

    return take


@pytest.fixture(scope="module")
def sim_start() -> datetime:
    """Where the simulated worker's clock starts: after the real now (attempts the pages create
    are due now), at an hour every US calling window is open."""
    from browser_support import business_afternoon_after

    return business_afternoon_after(datetime.now(timezone.utc))


@pytest.fixture(scope="module")
def demo_facts(live_app: LiveApp, sim_start: datetime):
    """The bundled consent records, internal DNC list and a national registry synced two days
    before the simulated start (outbound.demo's loader), so the gate has real, fresh facts."""
    from outbound.demo import _load_facts

    return _load_facts(live_app.engine, live_app.data_dir, sim_start)
