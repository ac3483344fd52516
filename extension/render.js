// Draw one check's result as DOM (text nodes only: nothing from the page or the server is parsed as HTML).

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "attrs") for (const [a, v] of Object.entries(value)) el.setAttribute(a, String(v));
    else el[key] = value;
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const score = (v) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(3) : "–");
const WORDS = { flagged: "Flagged", clear: "Nothing found", unjudged: "Not judged", error: "Could not check" };

function evidenceLines(model, result) {
  const e = result.evidence;
  if (!e) return [];
  if (model === "deepfake") {
    return (e.faces || []).map((f, i) => `face ${i + 1} (frame ${f.frame ?? 0}): ${score(f.score)} at [${(f.box || []).join(", ")}]`);
  }
  if (model === "meme") {
    const lines = [`text (${e.text_source || "?"}): ${e.text || "(none)"}`];
    for (const [branch, scores] of Object.entries(e.branches || {})) {
      for (const [name, value] of Object.entries(scores || {})) if (typeof value === "number") lines.push(`${branch} ${name}: ${score(value)}`);
    }
    return lines;
  }
  return [];
}

export function renderResult(container, result) {
  container.replaceChildren();
  if (!result) {
    container.append(h("p", { className: "hint", text: "No image checked yet." }));
    return;
  }
  container.dataset.state = result.state;
  container.dataset.verdict = result.verdict || "";
  container.append(h("p", { className: "src", text: result.srcUrl || "" }));
  if (result.state === "checking") {
    container.append(h("p", { className: "verdict checking", text: "Checking…" }));
    return;
  }
  container.append(h("p", { className: `verdict ${result.verdict}`, text: WORDS[result.verdict] || result.verdict }));
  if (result.error) {
    container.append(h("p", { className: "error" }, h("strong", { text: result.error.code }), `: ${result.error.message || ""}`));
    return;
  }
  container.append(h("p", { className: "hint", text: result.source === "lookup"
    ? "Known content: answered by lookup, nothing uploaded." : `Screened now (${result.source}).` }));
  for (const [model, r] of Object.entries(result.results || {})) {
    const validated = r.validation?.status === "validated";
    container.append(h("section", { className: "model", dataset: { model } },
      h("h2", {}, `${model} `, h("span", { className: "version", text: `v${r.model_version}` })),
      h("p", {}, h("span", { className: "label", text: r.label }), ` score ${score(r.score)}`),
      validated ? null : h("p", { className: "warning", text: "Not validated on real data: a hint, not a finding." }),
      h("ul", {}, evidenceLines(model, r).map((line) => h("li", { text: line })))));
  }
}
