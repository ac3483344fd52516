"""``Client``: submit media, wait for verdicts, read jobs, batches and lookups.

The API it calls is the server's v1 (README "API (v1)"). Where the server may not offer something
yet, the client degrades without changing its own API: ``wait`` sends ``?wait=`` (a long poll) and,
when the answer is not final, polls honouring ``Retry-After``; ``submit_batch`` falls back to one
``POST /v1/jobs`` per item when ``/v1/batches`` is missing; ``submit_url`` says so with
``FeatureUnavailable`` when the server only takes uploads.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from deepscreen.client.errors import ApiError, FeatureUnavailable, NotFound, WaitTimeout
from deepscreen.client.files import content_type, sha256_file
from deepscreen.client.transport import Transport, retry_after
from deepscreen.client.types import (
    Batch,
    BatchItem,
    Job,
    JobError,
    JobPage,
    Lookup,
    ModelInfo,
    Token,
    count_statuses,
)

MAX_WAIT = 30  # the longest ?wait= the server honours
BatchInput = str | Path | bytes | tuple[str, bytes]


def _models(models: Iterable[str] | str | None) -> str | None:
    if models is None:
        return None
    joined = models if isinstance(models, str) else ",".join(models)
    return joined or None


def _is_url(item: object) -> bool:
    return isinstance(item, str) and item.startswith(("http://", "https://"))


class Client:
    """A deepscreen API client. Thread-safe: ``deepscreen scan`` shares one across its upload threads.

    ``token`` is a JWT used as is; ``api_key`` (``ds_…``) is traded for short-lived JWTs, re-traded
    before each expires and once more on a 401. With neither, ``DEEPSCREEN_TOKEN`` /
    ``DEEPSCREEN_API_KEY`` are read; ``url`` defaults to ``DEEPSCREEN_URL`` (else http://127.0.0.1:8000).
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, max_retries: int = 5, backoff: float = 0.5, poll_interval: float = 1.0,
                 pool_size: int = 16, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if token is None and api_key is None:
            token = os.environ.get("DEEPSCREEN_TOKEN") or None
            api_key = None if token else os.environ.get("DEEPSCREEN_API_KEY") or None
        self.url = (url or os.environ.get("DEEPSCREEN_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.poll_interval = poll_interval
        self._sleep = sleep
        self.http = Transport(self.url, token=token, api_key=api_key, timeout=timeout, max_retries=max_retries,
                              backoff=backoff, pool_size=pool_size, session=session, sleep=sleep)
        self._batches: bool | None = None  # unknown until the first batch

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---- auth and catalogue ------------------------------------------------------------------------

    def exchange_key(self) -> Token:
        """Trade the API key for a JWT now (normally done lazily); returns its scope and lifetime."""
        return self.http.exchange()

    def models(self) -> list[ModelInfo]:
        body = self.http.request("GET", "/v1/models").json()
        return [ModelInfo.from_json(m) for m in body.get("items", [])]

    # ---- submission --------------------------------------------------------------------------------

    def _form(self, text: str | None, models: Iterable[str] | str | None,
              callback_url: str | None) -> list[tuple[str, str]]:
        form = [("text", text)] if text is not None else []
        joined = _models(models)
        if joined:
            form.append(("models", joined))
        if callback_url:
            form.append(("callback_url", callback_url))
        return form

    def _holding(self, wait: float | None) -> dict[str, Any]:
        """Request options for ``?wait=``: whole seconds up to MAX_WAIT (none when under one), and a
        read timeout that outlasts the server's hold."""
        hold = int(max(0.0, min(MAX_WAIT, wait or 0)))
        return {"params": {"wait": str(hold)} if hold else None, "timeout": self.http.timeout + hold}

    def _submit(self, form: list[tuple[str, str]], files: list[tuple[str, Any]] | None,
                idempotency_key: str | None, wait: float | None = None) -> Job:
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}  # makes retried POSTs safe
        extra = self._holding(wait)
        if files is None:  # still multipart (as the API documents), with plain fields only
            response = self.http.request("POST", "/v1/jobs", files=[(k, (None, v)) for k, v in form], headers=headers,
                                         **extra)
        else:
            response = self.http.request("POST", "/v1/jobs", data=form, files=files, headers=headers, **extra)
        return Job.from_json(response.json())

    def submit_file(self, file: str | Path | IO[bytes], *, text: str | None = None,
                    models: Iterable[str] | str | None = None, callback_url: str | None = None,
                    idempotency_key: str | None = None, filename: str | None = None,
                    wait: float | None = None) -> Job:
        """Upload an image or video. Answers at once with a verdict when the same bytes were already
        screened by the live model versions (``job.final``), else with a queued job to ``wait`` for.
        With ``wait`` (≤ 30 s) the server holds the answer until the verdict is in: one request
        (``job.final`` tells whether it came in time)."""
        form = self._form(text, models, callback_url)
        if isinstance(file, str | Path):
            path = Path(file)
            name = filename or path.name
            with path.open("rb") as fh:
                return self._submit(form, [("file", (name, fh, content_type(name)))], idempotency_key, wait)
        name = filename or Path(str(getattr(file, "name", "upload"))).name
        return self._submit(form, [("file", (name, file, content_type(name)))], idempotency_key, wait)

    def submit_bytes(self, data: bytes, filename: str = "upload", **options: Any) -> Job:
        return self.submit_file(io.BytesIO(data), filename=filename, **options)

    def submit_url(self, url: str, *, text: str | None = None, models: Iterable[str] | str | None = None,
                   callback_url: str | None = None, idempotency_key: str | None = None,
                   wait: float | None = None) -> Job:
        """Ask the server to fetch ``url`` and screen it (the server guards against SSRF); ``wait`` as
        in ``submit_file``.

        Raises ``FeatureUnavailable`` when the server takes uploads only (it then asks for a file).
        """
        form = [("url", url), *self._form(text, models, callback_url)]
        try:
            return self._submit(form, None, idempotency_key, wait)
        except ApiError as exc:
            if exc.status == 400 and exc.code == "missing_file":
                raise FeatureUnavailable("this server does not accept URL submissions; upload the bytes") from exc
            raise

    def submit_batch(self, items: Iterable[BatchInput], *, text: str | None = None,
                     models: Iterable[str] | str | None = None) -> Batch:
        """Submit many files (paths, bytes, ``(name, bytes)``) and/or URLs as one batch.

        Uses ``POST /v1/batches`` when the server has it; otherwise submits the items one by one and
        returns a ``local`` batch whose refused items carry their error instead of a job id.
        """
        entries = list(items)
        names = [self._name(item, n) for n, item in enumerate(entries)]
        if self._batches is not False:
            batch = self._post_batch(entries, names, text, models)
            if batch is not None:
                return batch
        return self._local_batch(entries, names, text, models)

    @staticmethod
    def _name(item: BatchInput, index: int) -> str:
        if isinstance(item, tuple):
            return item[0]
        if isinstance(item, bytes):
            return f"item-{index}"
        return str(item) if _is_url(item) else Path(item).name

    def _post_batch(self, entries: list[BatchInput], names: list[str], text: str | None,
                    models: Iterable[str] | str | None) -> Batch | None:
        form: list[tuple[str, str]] = [("url", str(e)) for e in entries if _is_url(e)]
        form += self._form(text, models, None)
        files: list[tuple[str, Any]] = []
        opened: list[IO[bytes]] = []
        try:
            for entry, name in zip(entries, names, strict=True):
                if _is_url(entry):
                    continue
                if isinstance(entry, tuple | bytes):
                    body: IO[bytes] = io.BytesIO(entry[1] if isinstance(entry, tuple) else entry)
                else:
                    body = Path(entry).open("rb")  # noqa: SIM115 - closed below, after the retries
                    opened.append(body)
                files.append(("file", (name, body, content_type(name))))
            response = self.http.request("POST", "/v1/batches", data=form, files=files, ok=(404, 405),
                                         headers={"Idempotency-Key": uuid.uuid4().hex})
        finally:
            for fh in opened:
                fh.close()
        if response.status_code in (404, 405):
            self._batches = False  # this server has no batches: do not ask again
            return None
        self._batches = True
        # The server numbers items in the order it read them: files first, then URL fields.
        ordered = [n for e, n in zip(entries, names, strict=True) if not _is_url(e)]
        ordered += [n for e, n in zip(entries, names, strict=True) if _is_url(e)]
        return Batch.from_json(response.json(), ordered)

    def _local_batch(self, entries: list[BatchInput], names: list[str], text: str | None,
                     models: Iterable[str] | str | None) -> Batch:
        items = []
        for index, (entry, name) in enumerate(zip(entries, names, strict=True)):
            try:
                if _is_url(entry):
                    job = self.submit_url(str(entry), text=text, models=models)
                elif isinstance(entry, tuple):
                    job = self.submit_bytes(entry[1], filename=entry[0], text=text, models=models)
                elif isinstance(entry, bytes):
                    job = self.submit_bytes(entry, filename=name, text=text, models=models)
                else:
                    job = self.submit_file(entry, text=text, models=models)
                items.append(BatchItem(index, job.id, job.status, job.error, name))
            except FeatureUnavailable as exc:
                items.append(BatchItem(index, None, "rejected", JobError("url_unsupported", str(exc)), name))
            except ApiError as exc:
                items.append(BatchItem(index, None, "rejected", JobError(exc.code, exc.message), name))
        return Batch(id=None, items=items, counts=count_statuses(items), local=True)

    def get_batch(self, batch: Batch | str) -> Batch:
        """The batch as it stands now (for a ``local`` batch, each job is re-read)."""
        if isinstance(batch, Batch) and batch.local:
            items = []
            for item in batch.items:
                if item.job_id is None:
                    items.append(item)
                    continue
                job = self.get_job(item.job_id)
                items.append(BatchItem(item.index, job.id, job.status, job.error, item.name))
            return Batch(id=None, items=items, counts=count_statuses(items), local=True)
        batch_id = batch.id if isinstance(batch, Batch) else batch
        if batch_id is None:
            raise ValueError("a batch without an id is a local one: pass the Batch itself")
        names = [i.name or "" for i in batch.items] if isinstance(batch, Batch) else None
        body = self.http.request("GET", f"/v1/batches/{quote(batch_id, safe='')}").json()
        return Batch.from_json(body, names)

    def wait_batch(self, batch: Batch, timeout: float = 600.0) -> list[Job]:
        """Wait for every job of the batch (items refused at submission have none); jobs in item order.

        A server batch is collected whole: ``GET /v1/batches/<id>?wait=…&include=jobs`` answers once
        every item is final, with each job's document, so a batch costs a request or two, not one per
        job. A server that ignores ``include`` (older) gets one long poll per job, as a local batch does.
        """
        deadline = time.monotonic() + timeout
        if batch.id is not None and not batch.local:
            path = f"/v1/batches/{quote(batch.id, safe='')}"
            while True:
                holding = self._holding(deadline - time.monotonic())
                response = self.http.request("GET", path, params={**(holding["params"] or {}), "include": "jobs"},
                                             timeout=holding["timeout"])
                items = [i for i in response.json().get("items") or [] if isinstance(i, dict) and i.get("job_id")]
                if not all(isinstance(i.get("job"), dict) for i in items):
                    break  # no documents in the answer: collect job by job below
                jobs = [Job.from_json(i["job"]) for i in items]
                if all(job.final for job in jobs):
                    return jobs
                if not self._pause(response, deadline):
                    unfinished = sum(not job.final for job in jobs)
                    raise WaitTimeout(f"batch {batch.id}: {unfinished} jobs unfinished after {timeout:.0f} s",
                                      next(job for job in jobs if not job.final))
        return [self.wait(job_id, timeout=max(0.0, deadline - time.monotonic())) for job_id in batch.job_ids]

    # ---- reading -----------------------------------------------------------------------------------

    def get_job(self, job_id: str, *, wait: float | None = None) -> Job:
        """``GET /v1/jobs/<id>``; with ``wait`` (≤ 30 s) the server may hold the answer until the job ends."""
        response = self.http.request("GET", f"/v1/jobs/{quote(job_id, safe='')}", **self._holding(wait))
        return Job.from_json(response.json())

    def wait(self, job: Job | str, timeout: float = 300.0) -> Job:
        """Return the job once it has ended (succeeded or failed); ``WaitTimeout`` after ``timeout`` s.

        Each round asks with ``?wait=`` so a server with long polls answers the moment the job ends;
        a non-final answer is followed after its ``Retry-After`` (else ``poll_interval``) seconds.
        """
        if isinstance(job, Job) and job.final:
            return job
        job_id = job.id if isinstance(job, Job) else job
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.request("GET", f"/v1/jobs/{quote(job_id, safe='')}",
                                         **self._holding(deadline - time.monotonic()))
            current = Job.from_json(response.json())
            if current.final:
                return current
            if not self._pause(response, deadline):
                raise WaitTimeout(f"job {job_id} still {current.status} after {timeout:.0f} s", current)

    def _pause(self, response: requests.Response, deadline: float) -> bool:
        """Sleep until it is time to ask again (the answer's Retry-After, else ``poll_interval``, never
        past ``deadline``); False, without sleeping, once the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        hinted = retry_after(response)
        self._sleep(min(remaining, self.poll_interval if hinted is None else hinted))
        return True

    def list_jobs(self, *, status: str | None = None, limit: int = 20, cursor: str | None = None) -> JobPage:
        """The caller's jobs, newest first (``GET /v1/jobs``)."""
        params = {"limit": str(limit)}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        body = self.http.request("GET", "/v1/jobs", params=params).json()
        return JobPage(items=[Job.from_json(j) for j in body.get("items", [])], next=body.get("next"))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        cursor = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next:
                return
            cursor = page.next

    def lookup(self, sha256: str) -> Lookup | None:
        """The verdict the live model versions already gave this content, or None when none is known."""
        try:
            body = self.http.request("GET", f"/v1/lookup/{quote(sha256.lower(), safe='')}").json()
        except NotFound:
            return None
        return Lookup.from_json(body)

    def lookup_file(self, path: str | Path) -> Lookup | None:
        return self.lookup(sha256_file(path))

    def lookup_bytes(self, data: bytes) -> Lookup | None:
        return self.lookup(hashlib.sha256(data).hexdigest())
