"""deepscreen.client against a live deepscreen (gunicorn + a Celery worker on loopback): API keys,
uploads, wait, reads, lists with filters and cursors, lookups, idempotent retries, and batches (the
one-request-per-item fallback today; /v1/batches where the server has it)."""

from __future__ import annotations

import time

import pytest

from deepscreen.client import AuthError, Client, DeepscreenError, FeatureUnavailable, NotFound, sha256_file
from tests.clients.conftest import Live, noise_jpeg

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_key(live: Live) -> str:
    return live.api_key("client-live")


def test_upload_wait_read_list_and_lookup(live: Live, api_key: str, tmp_path) -> None:
    path = tmp_path / "pic.jpg"
    path.write_bytes(noise_jpeg(4001))
    with Client(live.url, api_key=api_key) as client:
        token = client.exchange_key()
        assert token.scope == "submit read" and token.expires_in > 0
        assert client.lookup_file(path) is None  # never seen

        queued = client.submit_file(path)
        assert queued.status in ("queued", "running", "succeeded") and queued.status_url
        started = time.monotonic()
        done = client.wait(queued, timeout=300)
        print(f"verdict {time.monotonic() - started:.2f} s after submission")
        assert done.succeeded and done.id == queued.id and done.final
        nsfw = done.results["nsfw"]
        assert nsfw.label in ("safe", "nsfw") and 0.0 <= (nsfw.score or 0.0) <= 1.0
        assert nsfw.model_version == "1" and not nsfw.validated and nsfw.validation["status"]
        assert done.media and done.media["sha256"] == sha256_file(path)

        again = client.get_job(done.id, wait=5)  # a final job answers at once, ?wait= or not
        assert again.results["nsfw"].score == nsfw.score

        known = client.lookup_file(path)
        assert known is not None and known.results["nsfw"].label == nsfw.label

        listed = client.list_jobs(status="succeeded")
        assert done.id in [j.id for j in listed.items]
        assert all(j.status == "succeeded" for j in listed.items)
        assert done.id not in [j.id for j in client.list_jobs(status="failed").items]

        with pytest.raises(NotFound):
            client.get_job("00000000-0000-0000-0000-000000000000")


def test_submit_with_wait_answers_the_verdict_in_one_request(live: Live) -> None:
    """``submit_bytes(wait=)`` sends ``POST /v1/jobs?wait=``: the server holds the answer until the job
    is final, so the verdict comes back from the submission itself, with no poll."""
    with Client(live.url, token=live.token("client-submit-wait")) as client:
        sent: list[str] = []
        original = client.http.session.request

        def counting(method: str, url: str, **kwargs):  # type: ignore[no-untyped-def]
            sent.append(f"{method} {url.split('?')[0].rsplit('/v1/', 1)[-1]} {kwargs.get('params')}")
            return original(method, url, **kwargs)

        client.http.session.request = counting  # type: ignore[method-assign]
        job = client.submit_bytes(noise_jpeg(4050), filename="w.jpg", wait=30)
        assert job.final and job.succeeded, job
        assert job.results["nsfw"].label in ("safe", "nsfw")
        assert sent == ["POST jobs {'wait': '30'}"], sent  # one request: no status poll


def test_pages_of_jobs_follow_the_cursor(live: Live) -> None:
    with Client(live.url, token=live.token("client-pages")) as client:
        ids = [client.submit_bytes(noise_jpeg(4100 + n), filename=f"p{n}.jpg").id for n in range(3)]
        first = client.list_jobs(limit=2)
        assert len(first.items) == 2 and first.next
        assert [j.id for j in client.iter_jobs(page_size=2)] == list(reversed(ids))  # newest first
        for job_id in ids:
            client.wait(job_id, timeout=300)


def test_a_retried_submission_is_the_same_job(live: Live) -> None:
    with Client(live.url, token=live.token("client-idem")) as client:
        data = noise_jpeg(4200)
        first = client.submit_bytes(data, filename="a.jpg", idempotency_key="retry-me")
        second = client.submit_bytes(data, filename="a.jpg", idempotency_key="retry-me")
        assert first.id == second.id
        client.wait(first)


def test_batch_falls_back_to_one_upload_per_item(live: Live, tmp_path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(noise_jpeg(4300))
    with Client(live.url, token=live.token("client-batch")) as client:
        batch = client.submit_batch([good, ("bytes.jpg", noise_jpeg(4301)), ("notes.txt", b"plain text, not media")],
                                    models=["nsfw"])
        assert [i.name for i in batch.items] == ["good.jpg", "bytes.jpg", "notes.txt"]
        assert len(batch.job_ids) == 2
        refused = batch.items[2]
        assert refused.job_id is None and refused.error is not None
        assert refused.error.code == "unsupported_media_type"  # judged by its bytes, as for any upload
        if batch.local:  # a server without /v1/batches: the client remembered that
            assert batch.id is None and client._batches is False
        else:  # POST /v1/batches: one request, one id
            assert batch.id and batch.status_url == f"/v1/batches/{batch.id}" and client._batches is True
        print(f"batch path: {'one request per item (fallback)' if batch.local else 'POST /v1/batches'}")
        jobs = client.wait_batch(batch, timeout=300)
        assert [j.id for j in jobs] == batch.job_ids and all(j.succeeded for j in jobs)
        now = client.get_batch(batch)
        assert now.counts.get("succeeded") == 2 and now.final
        assert [i.job_id for i in now.items if i.job_id] == batch.job_ids


def test_url_submission_is_refused_until_the_server_offers_it(live: Live) -> None:
    # Today the server asks for a file; once URL submission lands, a loopback URL is refused by its
    # SSRF guard. Either way nothing is fetched from 127.0.0.1 and the client says why.
    with Client(live.url, token=live.token("client-url")) as client, pytest.raises(DeepscreenError) as refused:
        client.submit_url(f"{live.url}/health")
    assert isinstance(refused.value, FeatureUnavailable) or getattr(refused.value, "status", 0) in (400, 422)


def test_a_revoked_or_wrong_key_is_an_auth_error(live: Live, api_key: str) -> None:
    with Client(live.url, api_key=api_key + "x") as client, pytest.raises(AuthError) as refused:
        client.list_jobs()
    assert refused.value.status == 401
    with Client(live.url, token=live.token("reader", ("read",))) as reader, pytest.raises(AuthError) as forbidden:
        reader.submit_bytes(noise_jpeg(4400))
    assert forbidden.value.status == 403 and forbidden.value.code == "forbidden"
