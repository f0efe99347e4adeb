// Shared by the board and the operations page: the polite polling loop (both pages poll the same
// server and must never hammer it), JSON reading that keeps 64-bit ids exact, and formatting.

export const POLL_MS = 2000;
const BACKOFF_MAX_MS = 30000;

/** An element with attributes and children; text only, so server data never becomes markup. */
export function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (v != null && v !== false) node.setAttribute(k, String(v));
  }
  node.append(...kids.filter((c) => c != null));
  return node;
}

export const $ = (id) => document.getElementById(id);

export function setText(id, text) {
  const node = $(id);
  if (node) node.textContent = text;
}

// Ids and scores are 64-bit; past 2^53 a JS number would round them. Where the browser exposes
// the source text, such integers stay exact strings.
function exact(_key, value, ctx) {
  return typeof value === 'number' && !Number.isSafeInteger(value) && /^-?\d+$/.test(ctx?.source ?? '')
    ? ctx.source : value;
}

/** The parsed JSON body, or null. */
async function readJson(res) {
  try {
    const text = await res.text();
    return text ? JSON.parse(text, exact) : null;
  } catch {
    return null;
  }
}

/**
 * GET without the HTTP cache: `{ res, body }`, body being the parsed JSON (null for a 304 or none).
 * One timeout covers the headers and the body, so a request that stalls anywhere cannot stall
 * the poll chain.
 */
export async function get(url, headers = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10000);
  try {
    const res = await fetch(url, {
      cache: 'no-store', headers: { Accept: 'application/json', ...headers }, signal: ctl.signal,
    });
    const body = res.status === 304 ? null : await readJson(res);
    return { res, body };
  } finally {
    clearTimeout(timer);
  }
}

/** A failure to back off from; its message is shown to the user. */
export class Retry extends Error {}

const isInt = (v) => Number.isFinite(v) || /^-?\d+$/.test(typeof v === 'string' ? v : '');
/** A number, an exact-integer string as a number, or NaN. */
export const num = (v) => (isInt(v) ? Number(v) : NaN);

/** Plain digits ("12"), or "–". */
export const plainInt = (v) => (isInt(v) ? String(typeof v === 'number' ? Math.trunc(v) : v) : '–');

const fmt = new Intl.NumberFormat('en');
/** Thousands separators ("99,812"), exact for 64-bit strings; "–" when absent. */
export const groupedInt = (v) => (isInt(v) ? fmt.format(typeof v === 'string' ? BigInt(v) : v) : '–');

/** "4 s", "2 min 5 s", "1 h 3 min", "2 d 4 h"; "–" when absent. */
export function duration(ms) {
  if (!Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.floor(ms / 1000));
  const pair = (a, ua, b, ub) => (b ? `${a} ${ua} ${b} ${ub}` : `${a} ${ua}`);
  if (s < 60) return `${s} s`;
  if (s < 3600) return pair(Math.floor(s / 60), 'min', s % 60, 's');
  if (s < 86400) return pair(Math.floor(s / 3600), 'h', Math.floor(s / 60) % 60, 'min');
  return pair(Math.floor(s / 86400), 'd', Math.floor(s / 3600) % 24, 'h');
}

export const parseTime = (iso) => (typeof iso === 'string' ? Date.parse(iso) : NaN);

/** A `<time>` showing `text` (default: local clock time), with the full time as its title. */
export function timeEl(iso, text) {
  const t = parseTime(iso);
  if (!Number.isFinite(t)) return '–';
  const d = new Date(t);
  return el('time', { datetime: iso, title: d.toLocaleString() }, text ?? d.toLocaleTimeString());
}

/** Says `message` once through the page's polite live region. */
export function announce(message) {
  const region = $('live');
  region.textContent = '';
  setTimeout(() => { region.textContent = message; }, 50); // a new node, so repeats are spoken too
}

/**
 * Runs `tick` every POLL_MS while the tab is visible, one request at a time (a timeout chain).
 * A thrown error backs off 2 s, 4 s, … 30 s, with a countdown in #conn-note.
 * Returns `{ now() }` to poll at once.
 */
export function startPolling(tick) {
  let timer = null;
  let busy = false;
  let again = false;
  let failures = 0;
  let retryAt = 0;
  let why = '';
  let countdown = null;

  function renderNote() {
    const note = $('conn-note');
    note.hidden = failures === 0;
    const secs = Math.ceil((retryAt - performance.now()) / 1000);
    note.textContent = failures === 0 ? ''
      : `connection lost${why ? ` (${why})` : ''}, retrying ${secs > 0 ? `in ${secs} s` : 'now'}`;
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(run, delay);
  }

  async function run() {
    if (busy) { again = true; return; }
    if (document.visibilityState === 'hidden') return; // visibilitychange resumes
    busy = true;
    again = false;
    try {
      await tick();
      if (failures) announce('Connection restored.');
      failures = 0;
    } catch (err) {
      if (!failures) announce('Connection lost; retrying.');
      failures += 1;
      why = err instanceof Retry ? err.message : '';
    }
    busy = false;
    // Backoff with jitter, so many pages that lost the server together do not return together.
    const backoff = () => Math.min(POLL_MS * 2 ** (failures - 1), BACKOFF_MAX_MS) * (0.8 + 0.4 * Math.random());
    const delay = again ? 0 : failures ? Math.round(backoff()) : POLL_MS;
    retryAt = performance.now() + delay;
    renderNote();
    clearInterval(countdown);
    if (failures) countdown = setInterval(renderNote, 1000);
    schedule(delay);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') clearTimeout(timer);
    else if (!busy) schedule(0);
  });

  schedule(0);
  return { now: () => (busy ? (again = true) : schedule(0)) };
}
