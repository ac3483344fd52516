// The console's entry point: sign in, upload, follow the job, show the verdict, list recent jobs.
import { Api, isFinal } from "./api.js";
import { clear, fmtTime, h } from "./dom.js";
import { renderJob } from "./verdict.js";

const api = new Api();
const $ = (id) => document.getElementById(id);
const previews = new Map(); // job id → {url, name, kind}: uploads made in this tab (never fetched back)
let selectedFile = null;
let cursor = null;
let following = null; // AbortController of the job being followed

function show(signedIn) {
  $("signin").hidden = signedIn;
  $("workspace").hidden = !signedIn;
  $("who").hidden = !signedIn;
  $("who-text").textContent = signedIn ? `Signed in${api.scope ? ` (${api.scope})` : ""}` : "";
}

async function signIn(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    await api.signIn($("credential").value);
  } catch (err) {
    $("signin-error").textContent = `Could not sign in: ${err.message}`;
    return;
  }
  $("credential").value = "";
  show(true);
  await Promise.all([loadModels(), loadJobs(true)]);
  $("file").focus();
}

function signOut() {
  following?.abort();
  api.signOut();
  for (const source of previews.values()) URL.revokeObjectURL(source.url);
  previews.clear();
  show(false);
  $("credential").focus();
}

async function loadModels() {
  const box = $("models");
  try {
    const { items } = await api.models();
    const usable = items.filter((m) => (m.media || ["image"]).some((k) => k === "image" || k === "video"));
    box.replaceChildren(h("legend", { text: "Models" }));
    for (const model of usable) {
      const id = `model-${model.name}`;
      const validated = model.validation?.status === "validated";
      box.append(h("div", { className: "model-choice" },
        h("input", { type: "checkbox", id, name: "models", value: model.name, checked: Boolean(model.default) }),
        h("label", { attrs: { for: id } }, `${model.name} v${model.version}`,
          validated ? null : h("span", { className: "tag warn", text: "not validated on real data" }))));
    }
    box.append(h("p", { className: "hint", text: "Unticked: the server's defaults run." }));
  } catch (err) {
    box.replaceChildren(h("legend", { text: "Models" }), h("p", { className: "error", text: `Could not list models: ${err.message}` }));
  }
}

function chooseFile(file) {
  selectedFile = file || null;
  $("file-name").textContent = selectedFile ? `Selected: ${selectedFile.name} (${selectedFile.size} bytes)` : "";
}

function setSteps(status) {
  const order = ["queued", "running", "final"];
  const current = isFinal(status) ? "final" : status;
  for (const li of $("steps").children) {
    const step = li.dataset.step;
    li.classList.toggle("done", order.indexOf(step) < order.indexOf(current) || (step === "final" && isFinal(status)));
    if (step === current) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
    if (step === "final") li.textContent = isFinal(status) ? status : "finished";
  }
  $("job-status").textContent = `Status: ${status}`;
  $("job").dataset.status = status;
}

async function follow(jobId, first) {
  following?.abort();
  const controller = new AbortController();
  following = controller;
  $("job").hidden = false;
  const source = previews.get(jobId);
  const update = (job) => {
    if (controller.signal.aborted) return;
    setSteps(job.status);
    renderJob($("verdict"), job, source);
  };
  if (first) update(first);
  if (first && isFinal(first.status)) return;
  try {
    await api.follow(jobId, update, { signal: controller.signal });
  } catch (err) {
    if (!controller.signal.aborted) $("job-status").textContent = `Could not follow the job: ${err.message}`;
  }
  if (!controller.signal.aborted) loadJobs(true);
}

async function upload(event) {
  event.preventDefault();
  $("upload-error").textContent = "";
  if (!selectedFile) {
    $("upload-error").textContent = "Choose or drop a file first.";
    $("file").focus();
    return;
  }
  const models = [...document.querySelectorAll("#models input[name=models]:checked")].map((i) => i.value);
  $("submit").disabled = true;
  try {
    const job = await api.submit(selectedFile, { text: $("text").value, models });
    const kind = selectedFile.type.startsWith("video/") ? "video" : "image";
    previews.set(job.id, { url: URL.createObjectURL(selectedFile), name: selectedFile.name, kind });
    follow(job.id, job); // shows the verdict panel before its first await
    $("job-title").focus();
    loadJobs(true);
  } catch (err) {
    $("upload-error").textContent = `Upload refused: ${err.code ? `${err.code}: ` : ""}${err.message}`;
  } finally {
    $("submit").disabled = false;
  }
}

function jobSummary(job) {
  const labels = Object.entries(job.results || {}).map(([m, r]) => `${m} ${r.label}`).join(", ");
  const name = previews.get(job.id)?.name;
  return `${name ? `${name} · ` : ""}${job.status}${labels ? ` · ${labels}` : ""} · ${fmtTime(job.created_at)}`;
}

async function loadJobs(reset) {
  if (reset) cursor = null;
  $("history-error").textContent = "";
  try {
    const page = await api.jobs({ status: $("status-filter").value, cursor: cursor || "" });
    if (reset) clear($("job-list"));
    for (const job of page.items) {
      $("job-list").append(h("li", {}, h("button", {
        type: "button", className: "job-link", dataset: { jobId: job.id, status: job.status },
        on: { click: () => { follow(job.id, job); $("job-title").focus(); } },
      }, h("span", { className: "job-id", text: job.id.slice(0, 8) }), " ", jobSummary(job))));
    }
    cursor = page.next;
    $("more").hidden = !cursor;
    $("history-empty").hidden = $("job-list").children.length > 0;
  } catch (err) {
    $("history-error").textContent = `Could not list jobs: ${err.message}`;
  }
}

function wireDropZone() {
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) chooseFile(file);
  });
}

function main() {
  $("job-title").tabIndex = -1;
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("upload-form").addEventListener("submit", upload);
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  $("filter-form").addEventListener("submit", (e) => { e.preventDefault(); loadJobs(true); });
  $("status-filter").addEventListener("change", () => loadJobs(true));
  $("more").addEventListener("click", () => loadJobs(false));
  wireDropZone();
  show(api.signedIn);
  if (api.signedIn) {
    loadModels();
    loadJobs(true);
  }
  document.body.dataset.ready = "true";
}

main();
