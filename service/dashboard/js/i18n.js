// The page's words: one message catalogue per language (../i18n/<lang>.json), Simplified
// Chinese unless the user switched; the choice is kept in localStorage. Every text a user
// sees comes from t(); a missing key shows as the key itself, so it is noticed, not hidden.
const LANGS = ["zh-CN", "en"];
const DEFAULT = "zh-CN";
const STORE = "twinbase.lang";

let lang = DEFAULT;
let messages = {};
const listeners = [];

function stored() {
  try { return localStorage.getItem(STORE); } catch { return null; }
}

async function fetchCatalogue(code) {
  const r = await fetch(new URL(`i18n/${code}.json`, document.baseURI), { cache: "no-cache" });
  if (!r.ok) throw new Error(`${r.status} catalogue ${code}`);
  return r.json();
}

export async function initI18n() {
  const want = stored();
  lang = LANGS.includes(want) ? want : DEFAULT;
  messages = await fetchCatalogue(lang);
  applyDom();
}

export function currentLang() { return lang; }

export function t(key, params = {}) {
  const text = Object.hasOwn(messages, key) ? messages[key] : key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

// t() for a key that may not exist (a job kind or stage the service added later): the raw
// value then, which is an identifier, not a sentence
export function tOr(key, fallback) {
  return Object.hasOwn(messages, key) ? t(key) : fallback;
}

// elements marked data-i18n (text) or data-i18n-title (tooltip) take their words from here
export function applyDom(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

export function onLangChange(fn) { listeners.push(fn); }

export async function setLang(code) {
  if (!LANGS.includes(code)) throw new Error(`no catalogue ${code}`);
  messages = await fetchCatalogue(code);
  lang = code;
  try { localStorage.setItem(STORE, code); } catch { /* private mode: not remembered */ }
  applyDom();
  for (const fn of listeners) fn(code);
}

export function otherLang() { return lang === "zh-CN" ? "en" : "zh-CN"; }
