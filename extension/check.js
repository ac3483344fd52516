// "Check with deepscreen": fetch the image, hash it, ask /v1/lookup first (known content answers
// without an upload), else upload it (or hand the server its URL when the image cannot be read here),
// wait for the verdict and summarise it for the badge and the popup.
import { ApiError, getSettings, request, waitForJob } from "./api.js";

const ALARM = new Set(["fake", "hateful", "nsfw", "synthetic"]);
const JUDGED_NOTHING = new Set(["no_face", "no_text", "no_frames", "empty"]);
const MAX_BYTES = 50 * 1024 * 1024;

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function fileName(url, type) {
  try {
    const last = new URL(url).pathname.split("/").filter(Boolean).pop();
    if (last && /\.[a-z0-9]{2,5}$/i.test(last)) return last.slice(0, 100);
  } catch { /* data: or odd URL */ }
  return `image.${(type.split("/")[1] || "bin").replace(/[^a-z0-9]/gi, "")}`;
}

/** Read the image the way the page shows it (the extension has host permission, so no CORS wall). */
async function readImage(srcUrl) {
  try {
    const response = await fetch(srcUrl, { credentials: "include" });
    if (!response.ok) return null;
    const blob = await response.blob();
    if (blob.size === 0 || blob.size > MAX_BYTES) return null;
    return blob;
  } catch {
    return null;
  }
}

/** The badge's word for a set of results: "!" something alarming, "OK" all calm, "?" nothing judged. */
export function verdictOf(results) {
  const labels = Object.values(results || {}).map((r) => r.label);
  if (labels.some((l) => ALARM.has(l))) return "flagged";
  if (labels.length && labels.every((l) => JUDGED_NOTHING.has(l))) return "unjudged";
  return labels.length ? "clear" : "unjudged";
}

async function submit(settings, srcUrl, blob) {
  const form = new FormData();
  if (blob) form.append("file", blob, fileName(srcUrl, blob.type || "application/octet-stream"));
  else form.append("url", srcUrl);
  if (settings.models) form.append("models", settings.models);
  const headers = { "Idempotency-Key": crypto.randomUUID() };
  try {
    // ?wait=30: the server holds the answer until the verdict is in (one request); a server that
    // answers 202 anyway is long-polled below.
    return await (await request(settings, "POST", "/v1/jobs?wait=30", { body: form, headers })).json();
  } catch (err) {
    if (!blob && err.status === 400 && err.code === "missing_file") {
      throw new ApiError(400, "url_unsupported", "The image could not be read here and this server does not fetch URLs.");
    }
    throw err;
  }
}

/** Check one image. Returns (and the caller stores) {state, verdict, source, results, job, error…}. */
export async function checkImage(srcUrl) {
  const started = Date.now();
  const base = { srcUrl, startedAt: new Date(started).toISOString() };
  const settings = await getSettings();
  if (!settings.server || !settings.apiKey) {
    return { ...base, state: "error", verdict: "error", error: { code: "not_configured", message: "Open the options and set the server URL and your key." } };
  }
  try {
    const blob = await readImage(srcUrl);
    const sha256 = blob ? await sha256Hex(await blob.arrayBuffer()) : null;
    if (sha256) {
      const known = await request(settings, "GET", `/v1/lookup/${sha256}`, { ok: [404] });
      if (known.status === 200) {
        const body = await known.json();
        return { ...base, state: "done", source: "lookup", sha256, results: body.results, verdict: verdictOf(body.results),
          finishedAt: new Date().toISOString(), ms: Date.now() - started };
      }
    }
    let job = await submit(settings, srcUrl, blob);
    const source = blob ? "upload" : "url";
    if (!["succeeded", "failed"].includes(job.status)) job = await waitForJob(settings, job.id);
    if (job.status !== "succeeded") {
      return { ...base, state: "error", verdict: "error", source, sha256, jobId: job.id, media: job.media,
        error: job.error || { code: job.status, message: `the job ${job.status}` } };
    }
    return { ...base, state: "done", source, sha256: sha256 || job.media?.sha256, jobId: job.id, media: job.media,
      results: job.results, verdict: verdictOf(job.results), finishedAt: new Date().toISOString(), ms: Date.now() - started };
  } catch (err) {
    return { ...base, state: "error", verdict: "error", error: { code: err.code || "error", message: err.message } };
  }
}
