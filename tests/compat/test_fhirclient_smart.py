"""fhirclient's SMART App Launch support, unmodified, against the live server: a standalone
patient launch with PKCE (S256) as a public app, the patient signing in at the test OIDC
provider (tests/support/oidc_provider.py) and answering the consent page, then reads with
fhirclient's R4 models and a token refresh (`reauthorize`)."""

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.patient import Patient

from tests.support.fhir import document, new_ins, patient
from tests.support.live_server import LiveServer
from tests.support.oidc_provider import TestProvider

REDIRECT = "https://fhirclient.example.org/callback"
SCOPES = "openid fhirUser offline_access patient/DocumentReference.rs patient/Patient.r"


@pytest.fixture(scope="module")
def provider() -> Iterator[TestProvider]:
    with TestProvider() as p:
        yield p


@pytest.fixture(scope="module")
def live_smart(database_url: str, provider: TestProvider) -> Iterator[LiveServer]:
    import json

    server = LiveServer(database_url, auth_oidc_providers=json.dumps([provider.config()]))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def space(live_smart: LiveServer, provider: TestProvider) -> dict[str, Any]:
    """A patient with one document, the app registered by the operator."""
    ops = {"Authorization": f"Bearer {live_smart.token('operator')}"}
    ins = new_ins()
    r = requests.post(f"{live_smart.url}/Patient", json=patient(ins=ins), headers=ops, timeout=10)
    pid = r.json()["id"]
    lgc = {"Authorization": f"Bearer {live_smart.token('system')}"}
    r = requests.post(
        f"{live_smart.url}/DocumentReference", json=document(pid), headers=lgc, timeout=10
    )
    assert r.status_code == 201, r.text
    client_id = f"fhirclient-{uuid.uuid4().hex[:6]}"
    registration = {
        "client_id": client_id,
        "kind": "app",
        "name": "fhirclient app",
        "scopes": f"launch/patient {SCOPES}",
        "redirect_uris": [REDIRECT],
        "catalogue": {"publisher": "SMART Health IT", "purpose": "compatibility"},
    }
    r = requests.post(f"{live_smart.url}/auth/clients", json=registration, headers=ops, timeout=10)
    assert r.status_code == 201, r.text
    provider.next_ins = ins
    return {"patient": pid, "client_id": client_id}


def browse_to_the_app(url: str) -> str:
    """The patient's browser: sign in at the provider, allow on the consent page; returns
    the URL the app's redirect URI receives."""
    with requests.Session() as browser:
        to_provider = browser.get(url, allow_redirects=False, timeout=10)
        assert to_provider.status_code == 302, to_provider.text
        to_callback = browser.get(to_provider.headers["location"], allow_redirects=False)
        page = browser.get(to_callback.headers["location"], allow_redirects=False, timeout=10)
        assert page.status_code == 200, page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        handle = re.search(r'name="request" value="([^"]+)"', page.text)
        ticked = re.findall(r'name="scope" value="([^"]+)"', page.text)
        assert action and handle
        form = [("request", handle.group(1)), ("decision", "approve")]
        form += [("scope", s) for s in ticked]
        answer = browser.post(action.group(1), data=form, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"])


def test_fhirclient_standalone_launch(live_smart: LiveServer, space: dict[str, Any]) -> None:
    settings = {
        "app_id": space["client_id"],
        "api_base": live_smart.url,
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
    }
    smart = smart_client.FHIRClient(settings=settings)
    assert not smart.ready
    url = smart.authorize_url  # reads /metadata, adds launch/patient, state and PKCE S256
    assert "code_challenge_method=S256" in url
    smart.handle_callback(browse_to_the_app(url))
    assert smart.ready and smart.patient_id == space["patient"]
    me = Patient.read(space["patient"], smart.server)
    assert me.id == space["patient"]
    search = DocumentReference.where({"patient": space["patient"]})
    docs = list(search.perform_resources_iter(smart.server))
    assert [d.subject.reference for d in docs] == [f"Patient/{space['patient']}"]
    first = smart.server.auth.access_token
    assert smart.reauthorize()  # refresh_token grant, rotated
    assert smart.server.auth.access_token != first
    assert list(search.perform_resources_iter(smart.server))
