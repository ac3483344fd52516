"""The job API in service mode: PostgreSQL, Redis, S3 over HTTP and a real Celery worker process."""

from __future__ import annotations

import hashlib
import io

import pytest

from tests.conftest import jpeg_bytes, png_bytes
from tests.support.processes import wait_for


def submit(client, headers, data: bytes, name: str = "x.png", **form):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", headers=headers, data={"file": (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data")


def poll(client, headers, url: str, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    def done():  # type: ignore[no-untyped-def]
        body = client.get(url, headers=headers).get_json()
        return body if body["status"] in ("succeeded", "failed") else None

    return wait_for(done, timeout, what=f"{url} to finish")


def assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)


def test_submit_poll_succeeds_with_the_real_model_score(client, auth, worker, model_repo):  # type: ignore[no-untyped-def]
    data = jpeg_bytes((120, 90), seed=1)
    response = submit(client, auth, data, "photo.jpg")
    assert response.status_code == 202
    accepted = response.get_json()
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"/status/{accepted['id']}"

    job = poll(client, auth, accepted["status_url"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    result = job["results"]["nsfw"]
    assert result["model_version"] == "1"

    # The worker's score is the model's score on these bytes, computed here offline.
    from ml.image_decode import decode_image
    from ml.repository import ModelRepository

    offline = ModelRepository(model_repo).load("nsfw", ["CPUExecutionProvider"]).predict(
        [decode_image(data, 10**8)])[0]
    assert result["score"] == pytest.approx(offline.score, abs=1e-5)
    assert result["label"] == offline.label
    assert job["media"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/v1/jobs/{accepted['id']}", headers=auth).get_json()["results"] == job["results"]


def test_another_subject_gets_404(client, auth, worker):  # type: ignore[no-untyped-def]
    from core.settings import get_settings
    from core.tokens import issue_token

    job = submit(client, auth, png_bytes(color=(1, 2, 3))).get_json()
    other = {"Authorization": f"Bearer {issue_token(get_settings(), 'someone-else')}"}
    assert_error(client.get(job["status_url"], headers=other), 404, "not_found")
    assert_error(client.get(f"/v1/jobs/{job['id']}", headers=other), 404, "not_found")
    assert job["id"] not in [j["id"] for j in client.get("/v1/jobs", headers=other).get_json()["items"]]
    assert client.get(job["status_url"], headers=auth).status_code == 200


@pytest.mark.parametrize("header", [
    None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer ",
])
def test_missing_or_bad_token_is_401(client, service_env, header):  # type: ignore[no-untyped-def]
    headers = {"Authorization": header} if header is not None else {}
    assert_error(submit(client, headers, png_bytes()), 401, "unauthorized")
    assert_error(client.get("/v1/jobs", headers=headers), 401, "unauthorized")


def test_token_signed_with_another_secret_is_401(client, service_env):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from core.tokens import issue_token

    forged = issue_token(load_settings(jwt_secret="not-the-server-secret-" * 2), "mallory")
    assert_error(client.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"}), 401, "unauthorized")


def test_oversize_upload_is_413(service_env, auth):  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from web.app import create_app

    client = create_app(load_settings(max_upload_bytes=2000)).test_client()
    assert_error(submit(client, auth, jpeg_bytes((200, 200))), 413, "payload_too_large")


def test_decompression_bomb_header_is_413(client, auth):  # type: ignore[no-untyped-def]
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")  # 400 Mpixel in a few KB
    assert_error(submit(client, auth, buffer.getvalue()), 413, "image_too_large")


@pytest.mark.parametrize("payload", [b"%PDF-1.7 not an image", b"MZ\x90\x00" + b"\x00" * 60, b"\x89PNX" + b"\x00" * 100,
                                     b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"])
def test_wrong_magic_bytes_is_415(client, auth, payload):  # type: ignore[no-untyped-def]
    assert_error(submit(client, auth, payload, "looks-like.png"), 415, "unsupported_media_type")


def test_multipart_with_no_file_or_two_files(client, auth):  # type: ignore[no-untyped-def]
    assert_error(client.post("/v1/jobs", headers=auth, data={"text": "hi"}), 400, "missing_file")
    two = {"file": [(io.BytesIO(png_bytes()), "a.png"), (io.BytesIO(png_bytes()), "b.png")]}
    assert_error(client.post("/v1/jobs", headers=auth, data=two), 400, "too_many_files")
    assert_error(submit(client, auth, b""), 400, "empty_file")


def test_unknown_id_is_404(client, auth):  # type: ignore[no-untyped-def]
    assert_error(client.get("/status/00000000-0000-0000-0000-000000000000", headers=auth), 404, "not_found")
    assert_error(client.get("/status/" + "x" * 300, headers=auth), 404, "not_found")


def test_unknown_model_is_422(client, auth):  # type: ignore[no-untyped-def]
    assert_error(submit(client, auth, png_bytes(), models="nsfw,nope"), 422, "unknown_model")


def test_truncated_jpeg_is_refused_at_upload(client, auth):  # type: ignore[no-untyped-def]
    whole = jpeg_bytes((300, 300), seed=7)
    truncated = whole[: len(whole) // 2]  # header intact, scan data cut: the web's 1/8-scale decode notices
    response = submit(client, auth, truncated, "cut.jpg")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "corrupt_image"


def _png_with_bad_pixels() -> bytes:
    """A PNG whose chunk checksums are right but whose compressed pixels are garbage: only a full
    decode (the worker's) can tell."""
    import struct
    import zlib

    raw = png_bytes((120, 90))
    start = raw.index(b"IDAT") - 4
    length = struct.unpack(">I", raw[start:start + 4])[0]
    garbage = bytes((i * 37 + 11) % 256 for i in range(length))
    chunk = struct.pack(">I", length) + b"IDAT" + garbage + struct.pack(">I", zlib.crc32(b"IDAT" + garbage))
    return raw[:start] + chunk + raw[start + 12 + length:]


def test_corrupt_image_ends_failed_with_a_code(client, auth, worker):  # type: ignore[no-untyped-def]
    response = submit(client, auth, _png_with_bad_pixels(), "bad.png")
    assert response.status_code == 202, response.get_json()
    job = poll(client, auth, response.get_json()["status_url"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "corrupt_image"
    assert job["results"] == {}


def test_known_content_is_answered_at_once(client, auth, worker):  # type: ignore[no-untyped-def]
    data = jpeg_bytes((80, 80), seed=42)
    first = poll(client, auth, submit(client, auth, data).get_json()["status_url"])
    again = submit(client, auth, data)
    assert again.status_code == 200
    body = again.get_json()
    assert body["status"] == "succeeded" and body["id"] != first["id"]
    assert body["results"]["nsfw"]["score"] == first["results"]["nsfw"]["score"]
    assert body["results"]["nsfw"]["evidence"]["reused_from_job"] == first["id"]
    sha = hashlib.sha256(data).hexdigest()
    lookup = client.get(f"/v1/lookup/{sha}", headers=auth).get_json()
    assert lookup["results"]["nsfw"]["score"] == first["results"]["nsfw"]["score"]
    assert_error(client.get(f"/v1/lookup/{'0' * 64}", headers=auth), 404, "not_found")


def test_idempotency_key_replays_the_same_job(client, auth):  # type: ignore[no-untyped-def]
    headers = {**auth, "Idempotency-Key": "upload-123"}
    first = submit(client, headers, png_bytes(color=(9, 9, 9)))
    second = submit(client, headers, png_bytes(color=(9, 9, 9)))
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


def test_list_is_own_jobs_newest_first_and_paginated(client, auth):  # type: ignore[no-untyped-def]
    ids = [submit(client, auth, png_bytes(color=(i, 50, 50))).get_json()["id"] for i in range(5)]
    page = client.get("/v1/jobs?limit=2", headers=auth).get_json()
    seen = [j["id"] for j in page["items"]]
    while page["next"]:
        page = client.get(f"/v1/jobs?limit=2&cursor={page['next']}", headers=auth).get_json()
        seen += [j["id"] for j in page["items"]]
    assert seen == list(reversed(ids))
    assert_error(client.get("/v1/jobs?limit=0", headers=auth), 400, "bad_limit")
    assert_error(client.get("/v1/jobs?cursor=%%%", headers=auth), 400, "bad_cursor")


def test_models_lists_the_repository(client, auth):  # type: ignore[no-untyped-def]
    items = {m["name"]: m for m in client.get("/v1/models", headers=auth).get_json()["items"]}
    assert items["nsfw"]["version"] == "1"
    assert items["nsfw"]["default"] is True


def test_ready_goes_503_when_the_object_store_stops(client, service_env, s3_server):  # type: ignore[no-untyped-def]
    assert client.get("/ready").status_code == 200
    s3_server.stop()
    try:
        response = client.get("/ready")
        assert_error(response, 503, "not_ready")
        checks = response.get_json()["error"]["details"]["checks"]
        assert checks["object_store"]["ok"] is False and checks["database"]["ok"] is True
    finally:
        s3_server.start()
        from core.object_store import get_store

        get_store().ensure_bucket()  # type: ignore[attr-defined]
    assert client.get("/ready").status_code == 200


def test_health_and_metrics(client, auth):  # type: ignore[no-untyped-def]
    assert client.get("/health").get_json() == {"status": "ok"}
    submit(client, auth, png_bytes(color=(5, 6, 7)))
    text = client.get("/metrics").get_data(as_text=True)
    assert "deepscreen_jobs_submitted_total" in text
    assert "deepscreen_http_requests_total" in text
