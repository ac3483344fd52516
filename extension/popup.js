import { renderResult } from "./render.js";

const container = document.getElementById("result");

async function draw() {
  const { last } = await chrome.storage.session.get("last");
  renderResult(container, last);
}

chrome.storage.session.onChanged.addListener((changes) => {
  if (changes.last) renderResult(container, changes.last.newValue);
});
draw();
