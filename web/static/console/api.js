// The console's API client: same origin, Bearer tokens, retries on 429/503 honouring Retry-After,
// long polls (?wait=) with polling as the fallback. Credentials live in sessionStorage (this tab only).

const STORE = { key: "deepscreen.apiKey", token: "deepscreen.token", expires: "deepscreen.expires",
  scope: "deepscreen.scope" };
const FINAL = new Set(["succeeded", "failed", "expired", "cancelled"]);
const MAX_WAIT = 30;

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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
  const e = body && typeof body === "object" && body.error ? body.error : {};
  return new ApiError(response.status, e.code || `http_${response.status}`, e.message || response.statusText, e.details || {});
}

export const isFinal = (status) => FINAL.has(status);

export class Api {
  constructor(storage = window.sessionStorage, base = "") {
    this.storage = storage;
    this.base = base;
  }

  get signedIn() { return Boolean(this.storage.getItem(STORE.token)); }
  get scope() { return this.storage.getItem(STORE.scope) || ""; }

  /** An API key is traded for a JWT (and kept to trade again when the JWT expires); a token is checked. */
  async signIn(credential) {
    const value = credential.trim();
    this.signOut();
    if (!value) throw new ApiError(0, "empty", "Paste an API key or a token.");
    if (value.startsWith("ds_")) {
      this.storage.setItem(STORE.key, value);
      try { await this.exchange(); } catch (err) { this.signOut(); throw err; }
    } else {
      this.storage.setItem(STORE.token, value);
      this.storage.setItem(STORE.scope, "");
      try { await this.request("GET", "/v1/models"); } catch (err) { this.signOut(); throw err; }
    }
  }

  signOut() {
    for (const name of Object.values(STORE)) this.storage.removeItem(name);
  }

  async exchange() {
    const response = await fetch(`${this.base}/v1/auth/token`, {
      method: "POST", headers: { "X-API-Key": this.storage.getItem(STORE.key) || "" }, credentials: "omit",
    });
    if (!response.ok) throw await errorOf(response);
    const body = await response.json();
    const lifetime = Number(body.expires_in) || 0;
    const margin = Math.min(60, Math.max(1, lifetime * 0.1));
    this.storage.setItem(STORE.token, body.access_token);
    this.storage.setItem(STORE.expires, String(lifetime ? Date.now() + (lifetime - margin) * 1000 : 0));
    this.storage.setItem(STORE.scope, body.scope || "");
  }

  async bearer() {
    const expires = Number(this.storage.getItem(STORE.expires) || 0);
    if (this.storage.getItem(STORE.key) && (!this.storage.getItem(STORE.token) || (expires && Date.now() >= expires))) {
      await this.exchange();
    }
    return this.storage.getItem(STORE.token);
  }

  /** One call with up to 4 retries on 429/502/503/504 (Retry-After, else backoff) and one re-trade on 401. */
  async request(method, path, { body = undefined, signal = undefined } = {}) {
    let refreshed = false;
    for (let attempt = 0; ; attempt += 1) {
      const headers = { Authorization: `Bearer ${await this.bearer()}` };
      let response;
      try {
        response = await fetch(`${this.base}${path}`, { method, body, headers, signal, credentials: "omit" });
      } catch (err) {
        if (signal?.aborted || attempt >= 4) throw new ApiError(0, "network", `cannot reach the server: ${err.message}`);
        await sleep(500 * 2 ** attempt);
        continue;
      }
      if (response.ok) return response;
      if (response.status === 401 && this.storage.getItem(STORE.key) && !refreshed) {
        refreshed = true;
        await this.exchange();
        continue;
      }
      if ([429, 502, 503, 504].includes(response.status) && attempt < 4) {
        const hinted = retryAfter(response);
        await sleep(1000 * Math.min(60, hinted ?? 0.5 * 2 ** attempt));
        continue;
      }
      throw await errorOf(response);
    }
  }

  async json(method, path, options) {
    return (await this.request(method, path, options)).json();
  }

  models() { return this.json("GET", "/v1/models"); }

  submit(file, { text = "", models = [] } = {}) {
    const form = new FormData();
    form.append("file", file, file.name);
    if (text) form.append("text", text);
    if (models.length) form.append("models", models.join(","));
    return this.json("POST", "/v1/jobs", { body: form });
  }

  job(id) { return this.json("GET", `/v1/jobs/${encodeURIComponent(id)}`); }

  jobs({ status = "", cursor = "", limit = 20 } = {}) {
    const params = new URLSearchParams({ limit: String(limit) });
    if (status) params.set("status", status);
    if (cursor) params.set("cursor", cursor);
    return this.json("GET", `/v1/jobs?${params}`);
  }

  /**
   * Follow a job to its end, calling onUpdate with every state seen. Asks with ?wait= (a long poll where
   * the server has it); a non-final answer is followed after its Retry-After, else 1 s.
   */
  async follow(id, onUpdate, { timeoutMs = 600000, signal = undefined } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hold = Math.max(0, Math.min(MAX_WAIT, Math.floor((deadline - Date.now()) / 1000)));
      const response = await this.request("GET", `/v1/jobs/${encodeURIComponent(id)}?wait=${hold}`, { signal });
      const job = await response.json();
      onUpdate(job);
      if (isFinal(job.status)) return job;
      if (Date.now() >= deadline) throw new ApiError(0, "timeout", "gave up waiting for the verdict");
      await sleep(1000 * (retryAfter(response) ?? 1));
    }
  }
}
