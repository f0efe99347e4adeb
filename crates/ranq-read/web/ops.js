// The operations page: renders GET /v1/status (the report `ranq status --json` prints) so an
// operator sees at a glance whether the producer leads, the queue drains, workers live and the
// snapshots are fresh. Any field may be absent or null; a missing one shows "–" and breaks nothing.

import {
  $, el, setText, get, Retry, startPolling, announce, plainInt, num, duration, parseTime, timeEl,
} from '/assets/common.js';

const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : null);
let lastLeader;

async function tick() {
  let res, body;
  try {
    ({ res, body } = await get('/v1/status'));
  } catch {
    throw new Retry('');
  }
  if (!res.ok || !obj(body)) throw new Retry(body?.error || `HTTP ${res.status}`);
  render(body);
}

function render(r) {
  const now = parseTime(r.now);
  const ago = (iso) => now - parseTime(iso); // by the report's clock, not this machine's
  setText('namespace', typeof r.namespace === 'string' ? r.namespace : '–');
  producer(obj(r.leader), obj(r.last_tick), obj(r.ticks) || {}, ago);
  counters('queue', obj(r.queue) || {}, ['pending', 'running', 'dead']);
  warn('queue-dead', num(r.queue?.dead) > 0);
  counters('workers', obj(r.workers) || {}, ['alive']);
  warn('workers-alive', num(r.workers?.alive) === 0);
  freshness(obj(r.groups) || {}, obj(r.policy) || {});
  quarantine(Array.isArray(r.quarantine) ? r.quarantine : [], num(r.groups?.quarantined), ago);
  setText('updated', `updated ${new Date().toLocaleTimeString('en-GB')}`);
}

function counters(prefix, o, keys) {
  for (const k of keys) setText(`${prefix}-${k.split('_')[0]}`, plainInt(o[k]));
}

/** Marks the counter `id` (its box, and its warning line if any) as needing attention. */
function warn(id, on) {
  $(id).parentElement.classList.toggle('warn', on);
  const line = $(`${id}-warning`);
  if (line) line.hidden = !on;
}

function producer(leader, last, ticks, ago) {
  const id = leader ? (typeof leader.id === 'string' ? leader.id : '–') : 'none';
  setText('leader', id);
  $('leader-warning').hidden = Boolean(leader);
  setText('leader-token', plainInt(leader?.token));
  const held = ago(leader?.since);
  $('leader-since').replaceChildren(Number.isFinite(held) ? timeEl(leader.since, `for ${duration(held)}`) : '–');
  const lease = num(leader?.lease_expires_in_ms);
  setText('leader-lease', Number.isFinite(lease) ? `expires in ${duration(lease)}` : '–');
  if (lastLeader !== undefined && lastLeader !== id) {
    announce(leader ? `Producer ${id} now holds the lease.` : 'No producer holds the lease.');
  }
  lastLeader = id;

  setText('last-tick', last ? (typeof last.id === 'string' ? last.id : '–') : 'none');
  const since = ago(last?.at);
  $('last-tick-ago').replaceChildren(Number.isFinite(since) ? timeEl(last.at, `(${duration(since)} ago)`) : '');
  setText('last-tick-groups', plainInt(last?.groups));
  setText('last-tick-deferred', plainInt(last?.deferred));
  counters('ticks', ticks, ['enqueued', 'duplicates_skipped', 'missed']);
  warn('ticks-missed', num(ticks.missed) > 0);
}

function freshness(g, policy) {
  counters('groups', g, ['cached', 'fresh', 'stale', 'expired', 'quarantined']);
  warn('groups-expired', num(g.expired) > 0);
  warn('groups-quarantined', num(g.quarantined) > 0);
  const age = obj(g.age_ms) || {};
  for (const k of ['p50', 'p99', 'max']) setText(`age-${k}`, duration(num(age[k])));
  const staleAfter = num(policy.stale_after_ms);
  const maxAge = num(policy.max_age_ms);
  setText('policy', Number.isFinite(staleAfter + maxAge)
    ? `stale after ${duration(staleAfter)}, expired after ${duration(maxAge)}` : '');
  const parts = [['fresh', 'fresh', num(g.fresh)], ['stale', 'stale', num(g.stale)], ['miss', 'expired', num(g.expired)]];
  const buckets = (Array.isArray(g.age_buckets) ? g.age_buckets : []).filter(obj);
  $('chart-box').replaceChildren(chart(buckets, parts, staleAfter, maxAge, age));
  $('chart-legend').replaceChildren(...parts.map(([cls, label, n]) => el('li', {},
    el('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), `${label} ${Number.isFinite(n) ? n : '–'}`)));
}

function svg(tag, attrs, text) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A bucket bound, compact: "22.5 s", "90 s", "10 min". */
function bound(ms) {
  const r = (x) => Math.round(x * 10) / 10;
  return ms < 120000 ? `${r(ms / 1000)} s` : ms < 7200000 ? `${r(ms / 60000)} min` : `${r(ms / 3600000)} h`;
}

/** A stacked bar of fresh/stale/expired, then one bar per age bucket coloured by its status. */
function chart(buckets, parts, staleAfter, maxAge, age) {
  const n = Math.max(buckets.length, 1);
  const W = Math.max(480, n * 80);
  const base = 154;
  const tall = 94;
  const say = (v) => (Number.isFinite(v) ? v : '–');
  const root = svg('svg', {
    id: 'freshness-chart', viewBox: `0 0 ${W} 190`, role: 'img',
    'aria-label': `Snapshot ages: ${parts.map(([, label, v]) => `${say(v)} ${label}`).join(', ')}; `
      + `median ${duration(num(age.p50))}, p99 ${duration(num(age.p99))}.`,
  });
  const total = parts.reduce((s, [, , v]) => s + (v > 0 ? v : 0), 0);
  let x = 0;
  for (const [cls, , v] of parts) {
    if (!(v > 0)) continue;
    const w = Math.max((v / total) * W, 2);
    root.append(svg('rect', { x: x.toFixed(1), y: 0, width: w.toFixed(1), height: 16, class: `fill-${cls}` }));
    x += w;
  }
  if (!total) root.append(svg('rect', { x: 0, y: 0, width: W, height: 16, rx: 3, class: 'fill-empty' }));

  const max = Math.max(0, ...buckets.map((b) => num(b.count) || 0));
  const w = W / n;
  let prev = 0;
  buckets.forEach((b, i) => {
    const le = b.le_ms == null ? null : num(b.le_ms);
    const count = num(b.count) || 0;
    const cls = le === null ? 'miss' : le <= staleAfter ? 'fresh' : le <= maxAge ? 'stale' : 'miss';
    const h = max ? Math.max((tall * count) / max, count ? 2 : 0) : 0;
    const cx = (i + 0.5) * w;
    const label = le === null ? `> ${bound(prev)}` : `≤${bound(le)}`;
    const rect = svg('rect', {
      x: (i * w + w * 0.15).toFixed(1), y: (base - h).toFixed(1), width: (w * 0.7).toFixed(1), height: h.toFixed(1),
      rx: 2, class: `fill-${cls}`,
    });
    rect.append(svg('title', {}, `${label}: ${count}`));
    root.append(rect,
      svg('text', { x: cx, y: (base - h - 5).toFixed(1), 'text-anchor': 'middle', class: 'count' }, String(count)),
      svg('text', { x: cx, y: base + 18, 'text-anchor': 'middle' }, label));
    if (Number.isFinite(le)) prev = le;
  });
  root.append(svg('line', { x1: 0, y1: base + 0.5, x2: W, y2: base + 0.5, class: 'axis' }));
  if (!max) root.append(svg('text', { x: W / 2, y: 96, 'text-anchor': 'middle' }, 'no snapshots cached'));
  return root;
}

function quarantine(list, total, ago) {
  const rows = list.filter(obj).map((q) => {
    const g = plainInt(q.group);
    const since = ago(q.since);
    const until = -ago(q.retry_at);
    return el('tr', {},
      el('td', {}, g === '–' ? g : el('a', { href: `/?group=${g}` }, g)),
      el('td', { class: 'num' }, plainInt(q.failures)),
      el('td', {}, Number.isFinite(since) ? timeEl(q.since, `${duration(since)} ago`) : '–'),
      el('td', {}, Number.isFinite(until) ? timeEl(q.retry_at, until > 0 ? `in ${duration(until)}` : 'due now') : '–'),
      el('td', { class: 'err' }, typeof q.error === 'string' && q.error ? q.error : '–'));
  });
  $('quarantine').tBodies[0].replaceChildren(...rows);
  $('quarantine-box').hidden = !rows.length;
  $('quarantine-none').hidden = rows.length > 0 || total > 0;
  const more = total - rows.length;
  $('quarantine-more').hidden = !(more > 0);
  setText('quarantine-more', more > 0 ? `… and ${more} more` : '');
}

startPolling(tick);
