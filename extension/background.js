// Service worker: the "Check with deepscreen" context-menu entry on images, the check itself (check.js),
// and the verdict on the action's badge; the popup reads the last result from storage.session.
import { checkImage } from "./check.js";

const MENU_ID = "deepscreen-check";
const BADGES = {
  checking: { text: "…", color: "#57606a" },
  flagged: { text: "!", color: "#b42318" },
  clear: { text: "OK", color: "#067647" },
  unjudged: { text: "?", color: "#57606a" },
  error: { text: "ERR", color: "#7a2e0e" },
};

async function badge(state, tabId) {
  const { text, color } = BADGES[state];
  for (const target of tabId === undefined ? [{}] : [{ tabId }, {}]) {
    await chrome.action.setBadgeText({ ...target, text });
    await chrome.action.setBadgeBackgroundColor({ ...target, color });
  }
}

/** What the context-menu click does; exposed on the worker's global scope so tests can call it. */
export async function runCheck(srcUrl, tabId) {
  await badge("checking", tabId);
  await chrome.storage.session.set({ last: { state: "checking", srcUrl, startedAt: new Date().toISOString() } });
  const result = await checkImage(srcUrl);
  const { history = [] } = await chrome.storage.session.get("history");
  await chrome.storage.session.set({ last: result, history: [result, ...history].slice(0, 20) });
  await badge(result.verdict, tabId);
  await chrome.action.setTitle({ title: `deepscreen: ${result.state === "done" ? result.verdict : result.error?.message || "error"}` });
  return result;
}
globalThis.deepscreenCheck = runCheck;

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.create({ id: MENU_ID, title: "Check with deepscreen", contexts: ["image"] });
});

chrome.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId === MENU_ID && info.srcUrl) runCheck(info.srcUrl, tab?.id);
});
