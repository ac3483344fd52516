import { exchange, getSettings, saveSettings } from "./api.js";

const $ = (id) => document.getElementById(id);

async function load() {
  const settings = await getSettings();
  $("server").value = settings.server;
  $("api-key").value = settings.apiKey;
  $("models").value = settings.models;
}

async function save(event) {
  event.preventDefault();
  const status = $("status");
  status.className = "";
  let server;
  try {
    server = new URL($("server").value.trim());
    if (!["http:", "https:"].includes(server.protocol)) throw new Error("not http(s)");
  } catch {
    status.className = "error";
    status.textContent = "The server URL must start with https:// (or http:// for a local server).";
    return;
  }
  await saveSettings({ server: server.origin + server.pathname, apiKey: $("api-key").value, models: $("models").value });
  status.textContent = "Checking the key…";
  try {
    const token = await exchange(await getSettings());
    status.className = "ok";
    status.textContent = `Connected: token scopes "${token.scope}", valid ${token.expires_in} s (renewed automatically).`;
  } catch (err) {
    status.className = "error";
    status.textContent = `Saved, but the key was refused: ${err.message}`;
  }
}

$("options-form").addEventListener("submit", save);
load();
