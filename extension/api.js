// The extension's side of the deepscreen API: settings, personal key → short-lived JWT, requests with
// retries on 429/503 (Retry-After), and waiting for a job with ?wait= (polling where the server has no
// long poll). Used by the service worker and the options page.

const FINAL = new Set(["succeeded", "failed", "expired", "cancelled"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** {server, apiKey, models}: kept in storage.local (the key is the user's personal, revocable one). */
export async function getSettings() {
  const { server = "", apiKey = "", models = "" } = await chrome.storage.local.get(["server", "apiKey", "models"]);
  return { server: server.replace(/\/+$/, ""), apiKey, models };
}

export async function saveSettings({ server, apiKey, models }) {
  await chrome.storage.local.set({ server: server.trim().replace(/\/+$/, ""), apiKey: apiKey.trim(), models: models.trim() });
  await chrome.storage.session.remove(["token", "tokenExpires"]); // a new key needs a new token
}

function retryAfter(response) {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const e = body?.error ?? {};
  return new ApiError(response.status, e.code || `http_${response.status}`, e.message || response.statusText);
}

/** Trade the personal key for a JWT (POST /v1/auth/token); the JWT lives in storage.session (memory). */
export async function exchange(settings) {
  if (!settings.server || !settings.apiKey) throw new ApiError(0, "not_configured", "Set the server URL and your key in the options.");
  const response = await fetch(`${settings.server}/v1/auth/token`, {
    method: "POST", headers: { "X-API-Key": settings.apiKey }, credentials: "omit",
  });
  if (!response.ok) throw await errorOf(response);
  const body = await response.json();
  const lifetime = Number(body.expires_in) || 0;
  const margin = Math.min(60, Math.max(1, lifetime * 0.1));
  await chrome.storage.session.set({ token: body.access_token, tokenExpires: lifetime ? Date.now() + (lifetime - margin) * 1000 : 0 });
  return body;
}

async function bearer(settings) {
  const { token, tokenExpires = 0 } = await chrome.storage.session.get(["token", "tokenExpires"]);
  if (token && (!tokenExpires || Date.now() < tokenExpires)) return token;
  return (await exchange(settings)).access_token;
}

/** One API call: retried on 429/502/503/504 and network errors, one re-trade of the key on a 401. */
export async function request(settings, method, path, { body, headers = {}, ok = [] } = {}) {
  let refreshed = false;
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(`${settings.server}${path}`, {
        method, body, credentials: "omit", headers: { ...headers, Authorization: `Bearer ${await bearer(settings)}` },
      });
    } catch (err) {
      if (attempt >= 4) throw new ApiError(0, "network", `cannot reach ${settings.server}: ${err.message}`);
      await sleep(500 * 2 ** attempt);
      continue;
    }
    if (response.ok || ok.includes(response.status)) return response;
    if (response.status === 401 && !refreshed) {
      refreshed = true;
      await chrome.storage.session.remove(["token", "tokenExpires"]);
      continue;
    }
    if ([429, 502, 503, 504].includes(response.status) && attempt < 4) {
      await sleep(1000 * Math.min(60, retryAfter(response) ?? 0.5 * 2 ** attempt));
      continue;
    }
    throw await errorOf(response);
  }
}

/** The job once it has ended: ?wait= long polls, else polling honouring Retry-After (default 1 s). */
export async function waitForJob(settings, id, timeoutMs = 300000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hold = Math.max(0, Math.min(30, Math.floor((deadline - Date.now()) / 1000)));
    const response = await request(settings, "GET", `/v1/jobs/${encodeURIComponent(id)}?wait=${hold}`);
    const job = await response.json();
    if (FINAL.has(job.status)) return job;
    if (Date.now() >= deadline) throw new ApiError(0, "timeout", `job ${id} is still ${job.status}`);
    await sleep(1000 * (retryAfter(response) ?? 1));
  }
}
