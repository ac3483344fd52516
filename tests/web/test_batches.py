"""POST /v1/batches and GET /v1/batches/<id> on the test services with a real Celery worker."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import pytest

from tests.conftest import jpeg_bytes, png_bytes
from tests.support.processes import wait_for
from tests.web.media_server import MediaServer, start


@pytest.fixture(scope="module")
def media():  # type: ignore[no-untyped-def]
    server = MediaServer(routes={"/a.jpg": jpeg_bytes((72, 56), seed=4401), "/page.html": b"<html></html>"},
                         types={"/a.jpg": "image/jpeg", "/page.html": "text/html"})
    httpd = start(server)
    yield server
    httpd.shutdown()


@pytest.fixture()
def batch_client(service_env):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    return create_app(load_settings(url_fetch_allowed_hosts="127.0.0.1")).test_client()


def files(*blobs: bytes) -> list[tuple[io.BytesIO, str]]:
    return [(io.BytesIO(b), f"{i}.bin") for i, b in enumerate(blobs)]


def post_batch(client, headers, data: dict[str, Any], **kwargs):  # type: ignore[no-untyped-def]
    return client.post("/v1/batches", headers=headers, data=data, content_type="multipart/form-data", **kwargs)


def finished(client, headers, url: str, timeout: float = 90) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    def done():  # type: ignore[no-untyped-def]
        body = client.get(url, headers=headers).get_json()
        return body if not body["counts"]["queued"] and not body["counts"]["running"] else None

    return wait_for(done, timeout, interval=0.3, what=f"{url} to finish")


def test_files_and_urls_become_jobs_and_bad_items_are_reported_alone(batch_client, auth, media, worker):  # type: ignore[no-untyped-def]
    good = [jpeg_bytes((64, 48), seed=4400 + i) for i in range(3)]
    response = post_batch(batch_client, auth, {
        "file": files(good[0], b"%PDF-1.7 not media", good[1], good[2]),
        "url": [f"{media.url}/a.jpg", f"{media.url}/page.html", "http://localhost:1/x.png"],
        "models": "nsfw", "text": "the same caption for every item",
    })
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) == {"id", "status_url", "items"} and body["status_url"] == f"/v1/batches/{body['id']}"
    assert response.headers["Location"] == body["status_url"] and response.headers["Retry-After"] == "1"
    items = body["items"]
    assert [i["index"] for i in items] == list(range(7))  # files first, then URLs, each in order sent
    assert [i["status"] for i in items] == ["queued", "rejected", "queued", "queued", "queued", "rejected",
                                            "rejected"]
    assert items[1]["error"]["code"] == "unsupported_media_type" and items[1]["job_id"] is None
    assert items[5]["error"]["code"] == "unsupported_media_type"  # text/html behind a URL
    assert items[6]["error"]["code"] == "url_not_allowed"  # the SSRF guard, per item
    assert all(i["error"] is None and i["job_id"] for i in items if i["status"] == "queued")

    view = finished(batch_client, auth, body["status_url"])
    assert view["id"] == body["id"] and view["created_at"]
    assert view["counts"] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 0, "expired": 0}
    assert [i["status"] for i in view["items"]] == ["succeeded", "rejected", "succeeded", "succeeded",
                                                    "succeeded", "rejected", "rejected"]
    assert [i["job_id"] for i in view["items"]] == [i["job_id"] for i in items]
    for entry in view["items"]:
        if entry["job_id"]:  # each item is an ordinary job: readable alone, with the batch's fields
            job = batch_client.get(f"/v1/jobs/{entry['job_id']}", headers=auth).get_json()
            assert job["status"] == "succeeded" and job["models"] == ["nsfw"]
    done = batch_client.get(body["status_url"], headers=auth)
    assert "Retry-After" not in done.headers  # nothing left to wait for


def test_one_long_poll_collects_a_whole_batch_with_its_verdicts(batch_client, auth, worker):  # type: ignore[no-untyped-def]
    """?wait= holds the batch until every item is final; include=jobs carries each job's document,
    the same one GET /v1/jobs/<id> answers; a refused item has no job."""
    blobs = [jpeg_bytes((40, 40), seed=4500 + i) for i in range(3)]
    made = post_batch(batch_client, auth, {"file": files(blobs[0], b"not media", blobs[1], blobs[2]),
                                           "models": "nsfw"}).get_json()
    assert made["items"][0]["status"] == "queued"  # nothing was final when the wait began
    view = batch_client.get(f"{made['status_url']}?wait=30&include=jobs", headers=auth)
    body = view.get_json()
    assert view.status_code == 200 and "Retry-After" not in view.headers
    assert body["counts"]["succeeded"] == 3 and not body["counts"]["queued"] and not body["counts"]["running"]
    assert "job" not in body["items"][1] and body["items"][1]["status"] == "rejected"
    for entry in (body["items"][i] for i in (0, 2, 3)):
        job = entry["job"]
        assert job["id"] == entry["job_id"] and job["status"] == entry["status"] == "succeeded"
        assert "owner" not in job and job["status_url"] == f"/status/{job['id']}"
        assert set(job["results"]) == {"nsfw"} and job["finished_at"]
        alone = batch_client.get(f"/v1/jobs/{job['id']}", headers=auth).get_json()
        assert alone == job
    plain = batch_client.get(made["status_url"], headers=auth).get_json()
    assert all("job" not in i for i in plain["items"])  # only when asked for
    bad = batch_client.get(f"{made['status_url']}?include=verdicts", headers=auth)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_include"
    too_long = batch_client.get(f"{made['status_url']}?wait=31", headers=auth)
    assert too_long.status_code == 400 and too_long.get_json()["error"]["code"] == "bad_wait"


def test_a_batchs_files_are_recorded_together_and_known_content_is_answered_at_once(batch_client, auth, worker):  # type: ignore[no-untyped-def]
    """Five files (one twice, one refused) cost one INSERT of media rows and one of jobs; a second batch
    with a screened file answers that item from its verdict, as POST /v1/jobs does."""
    from sqlalchemy import event

    from core.db import get_engine

    a, b, c = (jpeg_bytes((36, 36), seed=4600 + i) for i in range(3))
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        made = post_batch(batch_client, auth, {"file": files(a, b, b"junk", a, c), "models": "nsfw"}).get_json()
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    inserts = [s.split("(")[0].strip() for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert inserts == ["INSERT INTO batches", "INSERT INTO media", "INSERT INTO jobs"], inserts
    items = made["items"]
    assert [i["status"] for i in items] == ["queued", "queued", "rejected", "queued", "queued"]
    assert len({i["job_id"] for i in items if i["job_id"]}) == 4  # the same file twice: two jobs
    done = batch_client.get(f"{made['status_url']}?wait=30&include=jobs", headers=auth).get_json()
    jobs = [i["job"] for i in done["items"] if i["job_id"]]
    assert [j["status"] for j in jobs] == ["succeeded"] * 4
    assert jobs[0]["media"]["sha256"] == jobs[2]["media"]["sha256"] != jobs[1]["media"]["sha256"]

    again = post_batch(batch_client, auth, {"file": files(c, jpeg_bytes((36, 36), seed=4699)),
                                            "models": "nsfw"}).get_json()["items"]
    assert [i["status"] for i in again] == ["succeeded", "queued"]  # c's verdict is known already
    reused = batch_client.get(f"/v1/jobs/{again[0]['job_id']}", headers=auth).get_json()
    assert reused["results"]["nsfw"]["evidence"]["reused_from_job"] == jobs[3]["id"]


def test_batches_are_private_to_their_owner(batch_client, auth, subject):  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from core.tokens import issue_token

    made = post_batch(batch_client, auth, {"file": files(png_bytes((30, 20), (9, 9, 9)))}).get_json()
    other = {"Authorization": f"Bearer {issue_token(get_settings(), subject + '-other')}"}
    for headers, status in ((other, 404), (auth, 200)):
        assert batch_client.get(made["status_url"], headers=headers).status_code == status
    missing = batch_client.get(f"/v1/batches/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert batch_client.get("/v1/batches/x%00y", headers=auth).status_code == 404
    assert batch_client.get(made["status_url"]).status_code == 401


def test_form_level_errors_refuse_the_whole_batch(batch_client, auth):  # type: ignore[no-untyped-def]
    def code(data: dict[str, Any]) -> tuple[int, str]:
        response = post_batch(batch_client, auth, data)
        return response.status_code, response.get_json()["error"]["code"]

    png = png_bytes()
    assert code({"text": "no items"}) == (400, "empty_batch")
    assert code({"url": [f"http://example.com/{i}.png" for i in range(101)]}) == (400, "too_many_items")
    assert code({"file": files(png), "models": "nope"}) == (422, "unknown_model")
    assert code({"file": files(png), "text": "x" * 20_000}) == (413, "text_too_long")
    assert code({"file": files(png), "callback_url": "ftp://x"}) == (422, "bad_callback_url")
    wrong_field = post_batch(batch_client, auth, {"image": (io.BytesIO(png), "a.png")})
    assert wrong_field.status_code == 400 and wrong_field.get_json()["error"]["code"] == "unexpected_field"


def test_a_hundred_items_and_one_wake_up_per_batch_max(batch_client, auth, worker):  # type: ignore[no-untyped-def]
    """100 files in one request: 100 jobs, ceil(100 / BATCH_MAX) broker messages, every job done."""
    from core.settings import get_settings

    blobs = [jpeg_bytes((32, 32), seed=50_000 + i) for i in range(100)]
    started = time.monotonic()
    response = post_batch(batch_client, auth, {"file": files(*blobs)})
    accepted = time.monotonic() - started
    assert response.status_code == 202
    items = response.get_json()["items"]
    assert len(items) == 100 and all(i["status"] == "queued" for i in items)
    view = finished(batch_client, auth, response.get_json()["status_url"], timeout=180)
    total = time.monotonic() - started
    assert view["counts"]["succeeded"] == 100, view["counts"]
    print(f"\n100-item batch: accepted in {accepted:.2f} s, all screened after {total:.1f} s "
          f"(BATCH_MAX {get_settings().batch_max})")


def test_an_idempotency_key_returns_the_first_batch(batch_client, auth):  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": uuid.uuid4().hex, **auth}
    first = post_batch(batch_client, key, {"file": files(png_bytes((21, 21), (1, 2, 3)), b"junk")})
    again = post_batch(batch_client, key, {"file": files(png_bytes((21, 21), (1, 2, 3)), b"junk")})
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert [i["job_id"] for i in again.get_json()["items"]] == [i["job_id"] for i in first.get_json()["items"]]
    too_long = post_batch(batch_client, {**auth, "Idempotency-Key": "k" * 201}, {"file": files(png_bytes())})
    assert too_long.status_code == 400 and too_long.get_json()["error"]["code"] == "bad_idempotency_key"


def test_each_item_counts_against_the_submit_limit(service_env, subject):  # type: ignore[no-untyped-def]
    from core.settings import get_settings, load_settings
    from core.tokens import issue_token
    from web.app import create_app

    client = create_app(load_settings(rate_limit_submit="5/minute")).test_client()
    headers = {"Authorization": f"Bearer {issue_token(get_settings(), subject)}"}
    three = {"file": files(*(png_bytes((10 + i, 10)) for i in range(3)))}
    assert post_batch(client, headers, three).status_code == 202
    refused = post_batch(client, headers, {"file": files(*(png_bytes((20 + i, 10)) for i in range(3)))})
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    fresh = {"Authorization": f"Bearer {issue_token(get_settings(), subject + '-big')}"}
    six = post_batch(client, fresh, {"file": files(*(png_bytes((30 + i, 10)) for i in range(6)))})
    assert six.status_code == 429  # one request, six submissions: over a limit of five
