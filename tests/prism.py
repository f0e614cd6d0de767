"""A local Prism mock of Twilio's REST API, for contract tests of the Twilio adapter.

    prism_url   base URL (http://127.0.0.1:<port>) of `prism mock` serving a patched copy of
                tests/twilio_oai/twilio_api_v2010.json (vendored), for the whole test session

Import the fixture into a test module (`from tests.prism import prism_url`). Prism
(`@stoplight/prism-cli`, PRISM_VERSION) is installed with npm into `.prism/` at the repository
root the first time, and reused after. Without node or npm the tests are skipped locally and fail
when CI=true, because CI must run the contract tests.

Why the spec is patched: Twilio's spec declares array properties of form bodies
(StatusCallbackEvent, MediaUrl…) without an `encoding` object, and Prism 5.14 then rejects the
repeated keys the SDK sends (`StatusCallbackEvent=a&StatusCallbackEvent=b`) with 422 "must be
array". Adding `encoding: {NAME: {style: form, explode: true}}` (what Twilio means) fixes it; the
vendored spec itself is never edited.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
PRISM_DIR = REPO_ROOT / ".prism"
PRISM_PACKAGE = "@stoplight/prism-cli"
PRISM_VERSION = "5.14"
TWILIO_SPEC = REPO_ROOT / "tests" / "twilio_oai" / "twilio_api_v2010.json"
FORM = "application/x-www-form-urlencoded"
INSTALL_TIMEOUT_SECONDS = 600
START_TIMEOUT_SECONDS = 90          # the spec is 1.9 MB; Prism parses it before listening
PROBE_ACCOUNT = "AC" + "0" * 32


def prism_executable() -> Path:
    return PRISM_DIR / "node_modules" / ".bin" / "prism"


def installed_version() -> str | None:
    manifest = PRISM_DIR / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def is_installed() -> bool:
    version = installed_version()
    return (version is not None and version.startswith(PRISM_VERSION + ".")
            and prism_executable().exists())


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where a silently skipped contract test would hide a break."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Prism is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Twilio contract tests need Prism: {reason}")


def ensure_prism_installed() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not on PATH (install Node.js 20 with npm)")
    PRISM_DIR.mkdir(exist_ok=True)
    # Two test runs in one checkout must not run npm into the same folder at once.
    with open(PRISM_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_installed():
            install_prism()
    return prism_executable()


def install_prism() -> None:
    command = ["npm", "install", "--prefix", str(PRISM_DIR), "--no-audit", "--no-fund",
               "--loglevel=error", f"{PRISM_PACKAGE}@{PRISM_VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT_SECONDS, cwd=PRISM_DIR)
    except subprocess.TimeoutExpired:
        unavailable(f"`{' '.join(command)}` took more than {INSTALL_TIMEOUT_SECONDS} s")
    if result.returncode != 0 or not is_installed():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        unavailable(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")


def patch_form_arrays(spec: dict) -> int:
    """Add `style: form, explode: true` encodings for array properties of form request bodies;
    the number of operations patched."""
    patched = 0
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            media = operation.get("requestBody", {}).get("content", {}).get(FORM)
            if media is None:
                continue
            properties = _resolve(spec, media.get("schema", {})).get("properties", {})
            arrays = [name for name, schema in properties.items()
                      if _resolve(spec, schema).get("type") == "array"]
            if arrays:
                encoding = media.setdefault("encoding", {})
                for name in arrays:
                    encoding.setdefault(name, {"style": "form", "explode": True})
                patched += 1
    return patched


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def write_patched_spec(directory: Path) -> Path:
    spec = json.loads(TWILIO_SPEC.read_text(encoding="utf-8"))
    if patch_form_arrays(spec) == 0:
        raise AssertionError(f"no form array properties found in {TWILIO_SPEC}: has the spec changed?")
    target = directory / TWILIO_SPEC.name
    target.write_text(json.dumps(spec), encoding="utf-8")
    return target


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prism exited with {process.returncode} before answering:\n{_tail(log)}")
        try:
            # Any HTTP answer (a 422 for this probe) means the mock has loaded the spec.
            requests.get(f"{url}/2010-04-01/Accounts/{PROBE_ACCOUNT}/Calls.json", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise RuntimeError(f"prism did not answer on {url} within {START_TIMEOUT_SECONDS} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    executable = ensure_prism_installed()
    workdir = tmp_path_factory.mktemp("prism")
    spec = write_patched_spec(workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prism.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen([str(executable), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec)],
                                   stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        wait_until_answering(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
