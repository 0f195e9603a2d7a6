"""HubSpot's official Python SDK (hubspot-api-client) against the sandbox."""

import json

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException, SimplePublicObjectInput
from hubspot.crm.owners import ApiException as OwnersApiException
from urllib3.util.retry import Retry


@pytest.fixture(scope="module")
def token(sandbox):
    return sandbox.hubspot_token()


def hubspot(sandbox, token, **kwargs):
    return HubSpot(access_token=token, host=sandbox.hubspot_url, **kwargs)


def test_the_sdk_pages_contacts_by_its_cursor_and_gets_each_once(sandbox, token):
    api = hubspot(sandbox, token)
    every = api.crm.contacts.get_all(properties=["email", "lifecyclestage"])
    ids = [c.id for c in every]
    assert len(ids) == sandbox.contacts
    assert len(set(ids)) == sandbox.contacts, "no contact twice"
    assert all(c.properties["email"] for c in every)

    # Page by hand, small pages, as an integration reading a cursor would.
    seen, after, pages = [], None, 0
    while True:
        page = api.crm.contacts.basic_api.get_page(limit=40, after=after)
        pages += 1
        assert len(page.results) <= 40
        seen.extend(c.id for c in page.results)
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after
    assert seen == ids
    assert pages == -(-sandbox.contacts // 40)
    companies = api.crm.companies.get_all()
    assert len({c.id for c in companies}) == len(companies) > 0


def test_a_single_contact_is_read_with_its_associations_and_patched(sandbox, token):
    api = hubspot(sandbox, token)
    first = api.crm.contacts.basic_api.get_page(limit=100, associations=["companies"]).results
    with_company = next(c for c in first if c.associations and "companies" in c.associations)
    contact = api.crm.contacts.basic_api.get_by_id(
        with_company.id, properties=["lifecyclestage", "city"], associations=["companies"]
    )
    assert contact.id == with_company.id
    assert "lifecyclestage" in contact.properties
    company_id = contact.associations["companies"].results[0].id

    updated = api.crm.contacts.basic_api.update(
        contact.id, SimplePublicObjectInput(properties={"city": "Lyon"})
    )
    assert updated.properties["city"] == "Lyon"
    again = api.crm.contacts.basic_api.get_by_id(contact.id, properties=["city"])
    assert again.properties["city"] == "Lyon"

    with pytest.raises(ApiException) as refused:
        api.crm.contacts.basic_api.update(
            contact.id, SimplePublicObjectInput(properties={"no_such_property": "x"})
        )
    assert refused.value.status == 400
    body = json.loads(refused.value.body)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["context"]["propertyName"] == ["no_such_property"]

    with pytest.raises(ApiException) as missing:
        api.crm.contacts.basic_api.get_by_id("99999999")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["category"] == "OBJECT_NOT_FOUND"

    company = api.crm.companies.basic_api.get_by_id(company_id, properties=["name"])
    assert company.properties["name"]


def test_the_associations_v4_page_of_a_company_pages_by_after(sandbox, token):
    api = hubspot(sandbox, token)
    contacts = api.crm.contacts.get_all(associations=["companies"])
    by_company = {}
    for c in contacts:
        for a in (c.associations or {}).get("companies", {}).results if c.associations else []:
            by_company.setdefault(a.id, set()).add(c.id)
    company, members = max(by_company.items(), key=lambda kv: len(kv[1]))
    assert len(members) >= 3

    seen, after, pages = set(), None, 0
    while True:
        kwargs = {"limit": 2}
        if after:
            kwargs["after"] = after
        page = api.crm.associations.v4.basic_api.get_page("companies", company, "contacts", **kwargs)
        pages += 1
        assert len(page.results) <= 2
        for r in page.results:
            assert r.association_types[0].type_id == 280
            seen.add(str(r.to_object_id))
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after
    assert seen == members
    assert pages == -(-len(members) // 2)


def test_a_429_is_an_api_exception_and_the_sdks_retry_waits_it_out(sandbox, token, settings):
    settings(hubspot_burst_per_10s=3, hubspot_burst_window_ms=1000)
    api = hubspot(sandbox, token)
    # Each SDK package raises its own ApiException class.
    with pytest.raises(OwnersApiException) as limited:
        for _ in range(4):
            api.crm.owners.owners_api.get_page()
    assert limited.value.status == 429
    body = json.loads(limited.value.body)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["errorType"] == "RATE_LIMIT"
    headers = {k.lower(): v for k, v in limited.value.headers.items()}
    assert headers["x-hubspot-ratelimit-max"] == "3"
    assert headers["x-hubspot-ratelimit-remaining"] == "0"
    assert headers["x-hubspot-ratelimit-interval-milliseconds"] == "1000"

    # The SDK's documented retry (urllib3's Retry) retries the 429s until the window has passed.
    retry = Retry(total=8, backoff_factor=0.2, status_forcelist=(429,), raise_on_status=True)
    patient = hubspot(sandbox, token, retry=retry)
    for _ in range(5):
        assert patient.crm.owners.owners_api.get_page().results
