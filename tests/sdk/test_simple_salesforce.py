"""simple-salesforce against the sandbox.

simple-salesforce always builds `https://{instance}` URLs; the sandbox serves plain HTTP on
loopback, so the session given to it sends those requests over HTTP to that one host.
"""

import json
from urllib.parse import urlparse

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)


class PlainHttpOnLoopback(HTTPAdapter):
    def send(self, request, **kwargs):
        request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, **kwargs)


def salesforce(instance_url, session_id):
    host = urlparse(instance_url)
    assert host.hostname == "127.0.0.1"
    session = requests.Session()
    session.mount(f"https://{host.hostname}:{host.port}", PlainHttpOnLoopback())
    return Salesforce(instance_url=instance_url, session_id=session_id, session=session)


@pytest.fixture(scope="module")
def sf(sandbox):
    session_id, instance_url = sandbox.salesforce_session()
    return salesforce(instance_url, session_id)


def test_upsert_by_external_id_twice_creates_one_record(sf):
    assert sf.Account.upsert("HubSpot_Company_Id__c/sdk-co-1", {"Name": "SDK Co"}) == 201
    assert sf.Account.upsert("HubSpot_Company_Id__c/sdk-co-1", {"Name": "SDK Co SAS"}) in (200, 204)
    found = sf.query_all("SELECT Id, Name FROM Account WHERE HubSpot_Company_Id__c = 'sdk-co-1'")
    assert found["totalSize"] == 1
    assert found["records"][0]["Name"] == "SDK Co SAS"
    record = sf.Account.get_by_custom_id("HubSpot_Company_Id__c", "sdk-co-1")
    assert record["Id"] == found["records"][0]["Id"]
    assert sf.Account.get(record["Id"])["Name"] == "SDK Co SAS"


def test_query_all_follows_next_records_url_over_several_pages(sf):
    for chunk in range(3):
        records = [
            {"attributes": {"type": "Contact"}, "LastName": f"sdk-{chunk}-{i}", "Title": "SDK bulk"}
            for i in range(150)
        ]
        answer = sf.restful(
            "composite/sobjects", method="POST", data=json.dumps({"allOrNone": False, "records": records})
        )
        assert all(r["success"] for r in answer)
    q = "SELECT Id, LastName FROM Contact WHERE Title = 'SDK bulk'"
    small_batches = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(q, headers=small_batches)
    assert first["done"] is False and first["nextRecordsUrl"].startswith("/services/data/")
    assert len(first["records"]) == 200
    every = sf.query_all(q, headers=small_batches)
    ids = [r["Id"] for r in every["records"]]
    assert every["totalSize"] == 450 == len(ids) == len(set(ids))


def test_salesforce_errors_become_simple_salesforces_exceptions(sandbox, sf):
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Contact.get("003000000000000AAA")
    assert e.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELEKT Id FROM Contact")
    assert e.value.content[0]["errorCode"] == "MALFORMED_QUERY"

    sf.Account.create({"Name": "Twin A", "HubSpot_Company_Id__c": "sdk-twin"})
    sf.Account.create({"Name": "Twin B", "HubSpot_Company_Id__c": "sdk-twin"})
    with pytest.raises(SalesforceMoreThanOneRecord) as e:
        sf.Account.upsert("HubSpot_Company_Id__c/sdk-twin", {"Name": "Which one?"})
    assert len(e.value.content) == 2

    _, instance_url = sandbox.salesforce_session()
    stale = salesforce(instance_url, "not-a-session")
    with pytest.raises(SalesforceExpiredSession) as e:
        stale.query("SELECT Id FROM Account")
    assert e.value.content[0]["errorCode"] == "INVALID_SESSION_ID"


def test_a_spent_allocation_is_a_refused_request(sf, settings):
    settings(salesforce_daily_allocation=1)
    with pytest.raises(SalesforceRefusedRequest) as e:
        sf.query("SELECT Id FROM Account")
    assert e.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
