"""The sandbox driven by clients nobody here wrote: HubSpot's official Python SDK
(hubspot-api-client) and simple-salesforce, both from PyPI.

One `leadsync sandbox` process serves the whole session on loopback; its printed
`LEADSYNC__...` lines give the URLs and the sandbox's own test credentials. The binary is
$LEADSYNC_BIN (default target/debug/leadsync, built by .ci/run).
"""

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CONTACTS = 250


class Sandbox:
    def __init__(self, env):
        self.env = env
        self.hubspot_url = env["LEADSYNC__HUBSPOT__API_BASE_URL"]
        self.salesforce_url = env["LEADSYNC__SALESFORCE__LOGIN_URL"]
        self.contacts = CONTACTS
        for url in (self.hubspot_url, self.salesforce_url):
            host = urlparse(url).hostname
            assert host == "127.0.0.1", f"the sandbox must listen on loopback only, not {url}"

    def settings(self, **changes):
        """Tightens (or restores) the sandbox's budgets and tier while it runs."""
        r = requests.post(f"{self.hubspot_url}/_sandbox/settings", json=changes, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def hubspot_token(self):
        """An OAuth access token, minted by the SDK's own token call."""
        from hubspot import HubSpot

        client = HubSpot(host=self.hubspot_url)
        answer = client.oauth.tokens_api.create(
            grant_type="refresh_token",
            client_id=self.env["LEADSYNC__HUBSPOT__CLIENT_ID"],
            client_secret=self.env["LEADSYNC__HUBSPOT__CLIENT_SECRET"],
            refresh_token=self.env["LEADSYNC__HUBSPOT__REFRESH_TOKEN"],
        )
        return answer.access_token

    def salesforce_session(self):
        """(session id, instance URL) from the refresh-token flow."""
        r = requests.post(
            f"{self.salesforce_url}/services/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": self.env["LEADSYNC__SALESFORCE__CLIENT_ID"],
                "client_secret": self.env["LEADSYNC__SALESFORCE__CLIENT_SECRET"],
                "refresh_token": self.env["LEADSYNC__SALESFORCE__REFRESH_TOKEN"],
            },
            timeout=5,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return body["access_token"], body["instance_url"]


@pytest.fixture(scope="session")
def sandbox():
    binary = os.environ.get("LEADSYNC_BIN", str(ROOT / "target" / "debug" / "leadsync"))
    proc = subprocess.Popen(
        [binary, "sandbox", "--contacts", str(CONTACTS), "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    env = {}
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("LEADSYNC__") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
            if line.startswith("serving until"):
                break
            assert time.monotonic() < deadline, "the sandbox did not start within 60 s"
        if proc.poll() is not None or "LEADSYNC__HUBSPOT__API_BASE_URL" not in env:
            raise RuntimeError(f"leadsync sandbox did not start: {proc.stderr.read()}")
        yield Sandbox(env)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def settings(sandbox):
    """Budgets a test tightens are put back after it."""
    before = requests.get(f"{sandbox.hubspot_url}/_sandbox/settings", timeout=5).json()
    yield sandbox.settings
    sandbox.settings(**before)
