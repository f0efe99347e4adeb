// The leaderboard page: one group's top 100, how fresh it is, and how ranks moved since the
// version this tab saw before. It revalidates with the ETag so an unchanged board costs the
// server a 304, and ticks the age locally between answers instead of asking again.

import {
  $, el, setText, get, Retry, startPolling, announce, plainInt, groupedInt, duration, timeEl,
} from '/assets/common.js';

const LIMIT = 100;
const RECENT_KEY = 'ranq.recent';
const STATUSES = ['FRESH', 'STALE', 'MISS'];
const I64 = 2n ** 63n;

// The operations page is served on the admin listener only: link to it where it is there.
fetch('/ops', { method: 'HEAD' }).then((res) => { if (res.ok) $('ops-link').hidden = false; }, () => {});

let S = {}; // the shown group: group, etag, status, snap (last 200 body), base (ranks before it), at, miss

/** The canonical id of a 64-bit signed group, or null. */
function parseGroup(raw) {
  const s = String(raw ?? '').trim();
  if (!/^-?\d{1,19}$/.test(s)) return null;
  const n = BigInt(s);
  return n < -I64 || n >= I64 ? null : n.toString();
}

function groupError(message) {
  $('group-error').textContent = message;
  $('group-error').hidden = !message;
  if (message) $('group-input').setAttribute('aria-invalid', 'true');
  else $('group-input').removeAttribute('aria-invalid');
}

function recent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || '[]');
    return Array.isArray(list) ? list.map(parseGroup).filter(Boolean).slice(0, 8) : [];
  } catch {
    return []; // storage is off (private mode)
  }
}

function saveRecent(list) {
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(list)); } catch { /* private mode */ }
  renderRecent(list);
}

function renderRecent(list = recent()) {
  $('recent').replaceChildren(...list.map((g) => el('li', {},
    el('button', { type: 'button', 'data-group': g, 'aria-label': `Show group ${g}` }, g))));
  $('recent-box').hidden = !list.length;
}

function select(group, remember = true) {
  groupError('');
  $('group-input').value = group;
  const url = new URL(location.href);
  url.searchParams.set('group', group);
  history.replaceState(null, '', url);
  if (remember) saveRecent([group, ...recent().filter((g) => g !== group)].slice(0, 8));
  if (group !== S.group) {
    S = { group };
    render();
  }
  poller.now();
}

async function tick() {
  const { group } = S;
  if (!group) return;
  let res, body;
  try {
    ({ res, body } = await get(`/v1/groups/${encodeURIComponent(group)}/top`, S.etag ? { 'If-None-Match': S.etag } : {}));
  } catch {
    throw new Retry('');
  }
  const header = (res.headers.get('X-Ranq-Status') || '').toUpperCase();
  if (group !== S.group) return; // another group was picked meanwhile
  if (res.status === 200 || res.status === 304) S.staleAt = staleAt(res);

  if (res.status === 304 && S.snap) {
    if (STATUSES.includes(header) && header !== S.status) {
      S.status = header;
      render();
      announceStatus();
    }
  } else if (res.status === 200 && body && typeof body === 'object') {
    snapshot(body, res.headers.get('ETag'), header);
  } else if (res.status === 404 && (header === 'MISS' || body?.code === 'miss')) {
    const was = S.status;
    Object.assign(S, { etag: null, status: 'MISS', miss: body || {} });
    render();
    if (was !== 'MISS') announce(`Group ${group} is not cached.`);
  } else if (res.status >= 400 && res.status < 500 && ![304, 408, 429].includes(res.status)) {
    S = {};
    render();
    saveRecent(recent().filter((g) => g !== group)); // the server will not show it; do not offer it
    groupError(body?.error || `The server refused group ${group} (${res.status}).`);
  } else {
    if (res.status === 304) S.etag = null;
    throw new Retry(body?.error || `HTTP ${res.status}`);
  }
}

function snapshot(body, etag, header) {
  const first = !S.snap;
  const newVersion = first || String(S.snap.version) !== String(body.version);
  // Movement is shown against the last ranking that differed: most refreshes change nothing,
  // and must not wipe the arrows of the one that did.
  let moved = false;
  if (newVersion && !first) {
    const before = rankMap(S.snap.entries);
    moved = !sameRanks(before, rankMap(body.entries));
    if (moved) S.base = before;
  }
  const was = S.status;
  Object.assign(S, {
    snap: body,
    etag,
    at: performance.now(),
    status: [body.status, header].find((s) => STATUSES.includes(s)) || null,
  });
  render(newVersion, moved);
  if (first || was === 'MISS') announce(`Showing the top of group ${S.group}, ${S.status || 'status unknown'}.`);
  else if (moved) announce('Leaderboard updated: the ranking changed.');
  else if (was !== S.status) announceStatus();
}

/**
 * When this answer turns STALE, on this page's clock: `Cache-Control: max-age` is the whole
 * seconds left (so up to a second early). It lets the badge age while the API is out of reach,
 * instead of showing FRESH beside an age of minutes.
 */
function staleAt(res) {
  const m = /max-age=(\d+)/.exec(res.headers.get('Cache-Control') || '');
  return m ? performance.now() + (Number(m[1]) + 1) * 1000 : null;
}

function announceStatus() {
  if (S.status === 'STALE') announce('Leaderboard is now STALE; updating…');
  else if (S.status === 'FRESH') announce('Leaderboard is FRESH.');
}

const sameRanks = (a, b) => a.size === b.size && [...a].every(([member, rank]) => b.get(member) === rank);

const rankMap = (entries) => new Map((Array.isArray(entries) ? entries : []).filter(Boolean)
  .map((e) => [String(e.member), e.rank]));

function render(rows = false, flash = false) {
  const { group, status, snap } = S;
  const miss = status === 'MISS';
  $('intro').hidden = Boolean(group);
  $('result').hidden = !group;
  document.title = group ? `Group ${group}${status ? ` · ${status}` : ''} · ranq` : 'Leaderboard · ranq';
  if (!group) return;
  setText('group-title', `Group ${group}`);
  const badge = $('badge');
  badge.hidden = !status;
  badge.textContent = status || '';
  badge.dataset.status = status || '';
  // A quarantined group is not being refreshed: its note says so instead.
  $('updating').hidden = status !== 'STALE' || snap?.quarantined === true;
  $('age-line').hidden = !snap || miss;
  $('loading').hidden = miss || Boolean(snap);
  $('empty').hidden = !miss;
  $('table-box').hidden = miss || !snap;
  setText('empty-text', `Group ${group} is not cached. If it exists, the workers will cache it shortly `
    + 'and this page will show it by itself.');
  renderQuarantine(miss ? S.miss : snap, miss);
  if (snap) {
    renderAge();
    const iso = typeof snap.computed_at === 'string' ? snap.computed_at : '';
    $('computed-at').replaceChildren(iso ? timeEl(iso, `at ${new Date(Date.parse(iso)).toLocaleTimeString()}`) : '');
  }
  if (rows) renderRows(flash);
}

function renderAge() {
  const age = (typeof S.snap.age_ms === 'number' ? S.snap.age_ms : NaN) + performance.now() - S.at;
  setText('age', `computed ${duration(age)} ago`);
}

function renderQuarantine(src, miss) {
  const note = $('quarantine-note');
  note.hidden = src?.quarantined !== true;
  if (note.hidden) return;
  const why = (miss ? src.refresh_error : src.error) || 'no reason given';
  note.textContent = `Refreshes of this group are failing (${why}); `
    + (miss ? 'they are retried by themselves.' : 'showing its last good snapshot.');
}

function movement(member, rank) {
  if (!S.base) return null;
  const before = S.base.get(String(member));
  if (before === undefined) return ['new', 'new', 'new entry'];
  const d = Number(before) - Number(rank);
  if (!Number.isFinite(d)) return null;
  if (d > 0) return ['up', `▲${d}`, `up ${d}`];
  if (d < 0) return ['down', `▼${-d}`, `down ${-d}`];
  return ['same', '–', 'unchanged'];
}

function renderRows(flash) {
  setText('board-caption', `Top ${LIMIT} of group ${S.group}`);
  const entries = (Array.isArray(S.snap.entries) ? S.snap.entries : []).filter((e) => e && typeof e === 'object');
  const rows = entries.map((e) => {
    const mv = movement(e.member, e.rank);
    const tr = el('tr', { 'data-member': plainInt(e.member) },
      el('td', { class: 'rank' }, plainInt(e.rank)),
      el('td', {}, plainInt(e.member)),
      el('td', { class: 'score', 'data-score': plainInt(e.score) }, groupedInt(e.score)),
      el('td', {}, ...(mv ? [el('span', { class: `move ${mv[0]}`, 'aria-hidden': 'true' }, mv[1]),
        el('span', { class: 'vh' }, mv[2])] : [])));
    if (flash && mv && mv[0] !== 'same') tr.classList.add('changed');
    return tr;
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'This group has no entries.')));
  $('board').tBodies[0].replaceChildren(...rows);
}

$('group-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const raw = $('group-input').value;
  const group = parseGroup(raw);
  if (group) select(group);
  else {
    groupError(raw.trim() ? 'A group id is a whole number from −9223372036854775808 to 9223372036854775807.'
      : 'Enter a group id.');
    $('group-input').focus();
  }
});

$('recent').addEventListener('click', (ev) => {
  const btn = ev.target.closest('button[data-group]');
  if (btn) select(btn.dataset.group);
});

setInterval(() => {
  if (!S.snap || S.status === 'MISS' || document.hidden) return;
  if (S.status === 'FRESH' && S.staleAt && performance.now() > S.staleAt) {
    S.status = 'STALE'; // the server will say so too at the next answer
    render();
    announceStatus();
  }
  renderAge();
}, 1000);

const poller = startPolling(tick);
renderRecent();
const initial = new URLSearchParams(location.search).get('group');
if (initial !== null && parseGroup(initial)) select(parseGroup(initial), false);
else {
  render();
  if (initial !== null) {
    $('group-input').value = initial;
    groupError('The group in the address is not a valid group id.');
  }
}
