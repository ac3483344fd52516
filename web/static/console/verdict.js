// A job's verdict with its evidence drawn: face boxes and per-face scores on the image, OCR lines and
// their boxes on a meme, per-branch scores, model versions and their validation notes.
import { clear, fmtScore, fmtTime, h, kvTable } from "./dom.js";

const ALARM = new Set(["fake", "hateful", "nsfw", "synthetic"]);

function labelClass(label) {
  if (ALARM.has(label)) return "label alarm";
  if (["real", "safe", "not_hateful"].includes(label)) return "label calm";
  return "label neutral";
}

/** [x1, y1, x2, y2] in image pixels → the box's position as percentages of the image. */
function percentBox(x1, y1, x2, y2, width, height) {
  return { left: (100 * x1) / width, top: (100 * y1) / height, width: (100 * (x2 - x1)) / width,
    height: (100 * (y2 - y1)) / height };
}

function placeBox(kind, rect, label, data) {
  const box = h("div", { className: `box ${kind}`, dataset: data, attrs: { role: "img", "aria-label": label } },
    h("span", { className: "box-label", text: label }));
  // CSSOM properties, not a style attribute: allowed under style-src 'self'.
  box.style.left = `${rect.left}%`;
  box.style.top = `${rect.top}%`;
  box.style.width = `${rect.width}%`;
  box.style.height = `${rect.height}%`;
  return box;
}

function overlays(job) {
  const media = job.media || {};
  const width = Number(media.width), height = Number(media.height);
  if (!(width > 0 && height > 0)) return [];
  const boxes = [];
  const deepfake = job.results?.deepfake;
  (deepfake?.evidence?.faces || []).forEach((face, i) => {
    if (!Array.isArray(face.box) || face.box.length !== 4 || (face.frame ?? 0) !== 0) return;
    const [x1, y1, x2, y2] = face.box.map(Number);
    const label = `face ${i + 1}: ${fmtScore(face.score)}`;
    boxes.push(placeBox(Number(face.score) >= Number(deepfake.evidence.threshold ?? 0.5) ? "face alarm" : "face",
      percentBox(x1, y1, x2, y2, width, height), label, { face: String(i), box: face.box.join(",") }));
  });
  (job.results?.meme?.evidence?.ocr_lines || []).forEach((line, i) => {
    if (!Array.isArray(line.box) || !line.box.length) return;
    const xs = line.box.map((p) => Number(p[0])), ys = line.box.map((p) => Number(p[1]));
    boxes.push(placeBox("ocr", percentBox(Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys), width, height),
      `text: ${line.text}`, { ocr: String(i) }));
  });
  return boxes;
}

function preview(job, source) {
  if (!source) {
    return h("p", { className: "hint", text: "The upload itself is not kept by the server; open a job you screened in this tab to see it with its evidence drawn." });
  }
  if (source.kind === "video") {
    return h("figure", { className: "preview" },
      h("video", { src: source.url, controls: true, muted: true, attrs: { "aria-label": `preview of ${source.name}` } }),
      h("figcaption", { text: `${source.name} — per-frame face scores are listed below.` }));
  }
  const image = h("img", { src: source.url, alt: `uploaded image ${source.name}`, id: "preview-image" });
  const stage = h("div", { className: "stage", id: "stage" }, image, h("div", { className: "overlay", id: "overlay" }, overlays(job)));
  return h("figure", { className: "preview" }, stage, h("figcaption", { text: source.name }));
}

function validationBlock(validation) {
  const v = validation || {};
  if (v.status !== "validated") {
    return h("div", { className: "warning validation", attrs: { role: "note" } },
      h("strong", { text: "⚠ Not validated on real data." }),
      " ", v.summary && v.summary !== "not validated on real data" ? v.summary : "This model version was never evaluated on a real labelled set: treat its score as a hint, not a finding.");
  }
  const rows = (v.datasets || []).map((d) => [d.name || "dataset",
    `n=${d.n ?? "?"}, AUROC ${fmtScore(d.auroc)}${Array.isArray(d.auroc_ci) ? ` (95% CI ${fmtScore(d.auroc_ci[0])}–${fmtScore(d.auroc_ci[1])})` : ""}${d.split ? `, ${d.split}` : ""}`]);
  return h("div", { className: "validation ok" }, h("p", { text: `Validated${v.date ? ` (${v.date})` : ""}: ${v.summary || ""}` }),
    rows.length ? kvTable(rows, "Validation data") : null);
}

function deepfakeEvidence(evidence) {
  const faces = evidence.faces || [];
  const parts = [];
  if (!faces.length) parts.push(h("p", { text: "No face was found, so nothing was judged." }));
  else {
    parts.push(h("table", { className: "grid" }, h("caption", { text: "Faces" }),
      h("thead", {}, h("tr", {}, ["#", "frame", "box (x1, y1, x2, y2)", "score", "detector"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, faces.map((f, i) => h("tr", {}, h("td", { text: String(i + 1) }), h("td", { text: String(f.frame ?? 0) }),
        h("td", { text: Array.isArray(f.box) ? f.box.join(", ") : "–" }), h("td", { text: fmtScore(f.score) }),
        h("td", { text: fmtScore(f.detector_score) }))))));
  }
  const agg = evidence.aggregation;
  parts.push(kvTable([["frames examined", String(evidence.frames_examined ?? "–")], ["threshold", fmtScore(evidence.threshold)],
    ["aggregation", agg && typeof agg === "object" ? `${agg.frame}; ${agg.item}` : String(agg ?? "–")],
    ["precision", String(evidence.precision ?? "–")]]));
  return parts;
}

function memeEvidence(evidence) {
  const parts = [kvTable([["text", evidence.text || "(none)"], ["text source", String(evidence.text_source ?? "–")],
    ["threshold", fmtScore(evidence.threshold)], ["fusion", evidence.fusion?.formula || evidence.fusion?.kind || "–"]], "Caption")];
  parts[0].classList.add("caption-table");
  const lines = evidence.ocr_lines || [];
  if (lines.length) {
    parts.push(h("table", { className: "grid ocr-lines" }, h("caption", { text: "OCR lines" }),
      h("thead", {}, h("tr", {}, ["text", "confidence"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, lines.map((l) => h("tr", {}, h("td", { text: l.text }), h("td", { text: fmtScore(l.confidence) }))))));
  }
  const branches = evidence.branches || {};
  const rows = [];
  for (const [branch, scores] of Object.entries(branches)) {
    for (const [name, value] of Object.entries(scores || {})) {
      if (typeof value === "number") rows.push([`${branch} · ${name}`, fmtScore(value)]);
    }
  }
  if (rows.length) parts.push(kvTable(rows, "Per-branch scores"));
  if (evidence.note) parts.push(h("p", { className: "hint", text: evidence.note }));
  return parts;
}

function resultCard(model, result) {
  const evidence = result.evidence || {};
  const scores = Object.entries(result.scores || {}).map(([k, v]) => [k, fmtScore(v)]);
  let details = [];
  if (model === "deepfake") details = deepfakeEvidence(evidence);
  else if (model === "meme") details = memeEvidence(evidence);
  return h("article", { className: "result", dataset: { model } },
    h("h3", {}, model, h("span", { className: "version", text: ` version ${result.model_version}` })),
    h("p", { className: "headline" }, h("span", { className: labelClass(result.label), text: result.label }),
      h("span", { className: "score", text: ` score ${fmtScore(result.score)}` })),
    validationBlock(result.validation),
    scores.length ? kvTable(scores, "Scores") : null,
    details,
    h("details", {}, h("summary", { text: "Raw evidence (JSON)" }), h("pre", { text: JSON.stringify(evidence, null, 2) })));
}

/** Render `job` into `container`; `source` ({url, name, kind}) is the local preview when this tab has it. */
export function renderJob(container, job, source) {
  clear(container);
  container.dataset.jobId = job.id;
  const media = job.media || {};
  container.append(kvTable([
    ["file", source?.name || "(not known to this tab)"], ["job", job.id], ["status", job.status],
    ["media", media.kind ? `${media.kind} ${media.format}, ${media.width}×${media.height}, ${media.size} bytes` : "–"],
    ["submitted", fmtTime(job.created_at)], ["finished", fmtTime(job.finished_at)],
  ], "Job"));
  if (job.error) {
    container.append(h("p", { className: "error", attrs: { role: "alert" } }, h("strong", { text: job.error.code }), `: ${job.error.message || ""}`));
  }
  container.append(preview(job, source));
  const results = Object.entries(job.results || {});
  if (results.length) container.append(h("div", { className: "results" }, results.map(([m, r]) => resultCard(m, r))));
}
