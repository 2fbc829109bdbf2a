// emotion_ros live viewer: one WebSocket carries JPEG frames (binary) and the graph's state (JSON).
// Plain JavaScript and canvas; nothing is loaded from anywhere but this server.
// Ids and names come from the graph: they are keys of Maps (or null-prototype objects) only, so an id like
// `__proto__` or `constructor` is just a name. Numbers may be null (the server sends non-finite ones so).
'use strict';

// Same colours as the boxes drawn on the annotated image (emotion_ros/core/faces/annotate.py, there in BGR).
const COLORS = Object.assign(Object.create(null), {
  happy: '#ffc800', surprise: '#00c8ff', neutral: '#c8c8c8', sad: '#0050ff', angry: '#ff0000',
  fear: '#c800c8', disgust: '#00a000', contempt: '#a07850',
});
const LEVELS = ['OK', 'WARN', 'ERROR', 'STALE'];
const MAX_TRACKS = 32;      // timelines kept (as the server's state.MAX_TRACKS); the id seen longest ago goes
const MAX_POINTS = 1000;    // points per timeline: one per timelineS / MAX_POINTS seconds at most
const color = (label) => (typeof label === 'string' && COLORS[label]) || '#ffffff';
const num = (x) => (Number.isFinite(x) ? x : 0);
const fmt = (x, digits) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const $ = (id) => document.getElementById(id);

const view = {
  timelineS: 60, labels: [], timelines: new Map(), faces: [], stamp: 0, diagnostics: [], hue: null, viewer: {},
  serverSkew: 0, frames: [], framesDrawn: 0, decoding: false, pendingFrame: null, renderTimer: null,
  badMessages: 0, renderErrors: 0,
};
window.emotionViewer = view;  // for tests and the curious (read-only use)

const token = new URLSearchParams(location.search).get('token');

function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' +
    (token ? '?token=' + encodeURIComponent(token) : '');
  const ws = new WebSocket(url);
  ws.binaryType = 'blob';
  ws.onopen = () => setStatus('live', true);
  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') { onFrame(ev.data); return; }
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { view.badMessages += 1; return; }
    if (msg && typeof msg === 'object') onMessage(msg);
    else view.badMessages += 1;
  };
  ws.onclose = () => { setStatus('disconnected, retrying…', false); setTimeout(connect, 1000); };
}

function setStatus(text, ok) {
  const el = $('status');
  el.textContent = text;
  el.className = 'status ' + (ok ? 'ok' : 'bad');
}

// Frames: decode only the newest; one that arrives while another decodes replaces the waiting one.
function onFrame(blob) {
  if (view.decoding) { view.pendingFrame = blob; return; }
  view.decoding = true;
  createImageBitmap(blob).then((bitmap) => {
    const canvas = $('video');
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width; canvas.height = bitmap.height;
    }
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    bitmap.close();
    view.framesDrawn += 1;
    const now = performance.now();
    view.frames.push(now);
    while (view.frames.length && now - view.frames[0] > 3000) view.frames.shift();
  }).catch(() => {}).finally(() => {
    view.decoding = false;
    const next = view.pendingFrame;
    view.pendingFrame = null;
    if (next) onFrame(next);
  });
}

const list = (x) => (Array.isArray(x) ? x : []);

function onMessage(msg) {
  try {
    if (msg.type === 'hello') {
      if (Number.isFinite(msg.timeline_s) && msg.timeline_s > 0) view.timelineS = msg.timeline_s;
      if (list(msg.labels).length) view.labels = msg.labels;
      const history = msg.history && typeof msg.history === 'object' ? msg.history : {};
      view.timelines = new Map(Object.entries(history).filter(([, line]) => Array.isArray(line)));
    } else if (msg.type === 'state') {
      view.serverSkew = num(msg.server_time) - Date.now() / 1000;
      view.diagnostics = list(msg.diagnostics).filter((s) => s && typeof s.name === 'string');
      view.hue = msg.hue && typeof msg.hue === 'object' ? msg.hue : null;
      view.viewer = msg.viewer && typeof msg.viewer === 'object' ? msg.viewer : {};
      if (Number.isFinite(msg.stamp) && msg.stamp !== view.stamp) addFaces(msg.stamp, list(msg.faces));
    }
  } catch (e) {
    view.badMessages += 1;
  }
  scheduleRender();
}

const faceId = (f) => (typeof f.id === 'string' && f.id) || '?';

function addFaces(stamp, faces) {
  view.stamp = stamp;
  view.faces = faces.filter((f) => f && typeof f === 'object');
  const spacing = view.timelineS / MAX_POINTS;
  for (const f of view.faces) {
    if (list(f.labels).length) view.labels = f.labels;
    const id = faceId(f);
    const line = view.timelines.get(id) || [];
    view.timelines.delete(id);
    view.timelines.set(id, line);  // re-inserted: Map order = seen longest ago first
    const last = line.length ? line[line.length - 1][0] : null;
    if (last === null || stamp - last >= spacing) line.push([stamp, f.label, f.confidence, f.valence, f.arousal]);
    if (line.length > MAX_POINTS) line.shift();
  }
  for (const [id, line] of view.timelines) {
    while (line.length && (line[0][0] < stamp - view.timelineS || line[0][0] > stamp + 5)) line.shift();
    if (!line.length) view.timelines.delete(id);
  }
  while (view.timelines.size > MAX_TRACKS) view.timelines.delete(view.timelines.keys().next().value);
}

function scheduleRender() {
  if (view.renderTimer === null) view.renderTimer = setTimeout(() => { view.renderTimer = null; render(); }, 100);
}

// Each panel on its own: one that fails on odd data cannot blank or freeze the others.
function render() {
  for (const panel of [renderRates, renderFaces, renderAffect, renderDiagnostics, renderHue]) {
    try { panel(); } catch (e) { view.renderErrors += 1; }
  }
}

function renderRates() {
  const f = view.frames;
  const fps = f.length > 1 ? (f.length - 1) * 1000 / (f[f.length - 1] - f[0]) : 0;
  const v = view.viewer;
  $('rates').textContent = `shown ${fps.toFixed(1)} fps · streamed ${num(v.stream_fps).toFixed(1)} fps · ` +
    `frames in ${v.frames_in || 0}, skipped for slow viewers ${v.frames_skipped || 0} · browsers ${v.clients || 0}`;
}

// ---------------------------------------------------------------- faces: card, bar chart, timeline

function faceCard(id) {
  let card = document.querySelector(`.face[data-id="${CSS.escape(id)}"]`);
  if (card) return card;
  card = document.createElement('div');
  card.className = 'face';
  card.dataset.id = id;
  card.innerHTML = '<h3><span class="title"></span><span class="va"></span></h3><div class="bars"></div>' +
    '<canvas class="timeline" width="360" height="56"></canvas><div class="legend"></div>';
  $('faces').appendChild(card);
  return card;
}

function renderFaces() {
  const container = $('faces');
  const current = new Map(view.faces.map((f) => [faceId(f), f]));
  const ids = new Set([...view.timelines.keys(), ...current.keys()]);
  const empty = container.querySelector('.empty');
  if (empty && ids.size) empty.remove();
  for (const card of container.querySelectorAll('.face')) if (!ids.has(card.dataset.id)) card.remove();
  for (const id of [...ids].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))) {
    const card = faceCard(id);
    const f = current.get(id);
    card.classList.toggle('gone', !f);
    if (f) {
      card.querySelector('.title').textContent = `#${id} ${f.label} ${fmt(100 * f.confidence, 0)} %`;
      card.querySelector('.title').style.color = color(f.label);
      card.querySelector('.va').textContent = `valence ${fmt(f.valence, 2)} · arousal ${fmt(f.arousal, 2)}`;
      renderBars(card.querySelector('.bars'), f);
    } else {
      card.querySelector('.va').textContent = 'not in view';
    }
    renderTimeline(card.querySelector('.timeline'), view.timelines.get(id) || []);
    card.querySelector('.legend').textContent = `expression over the last ${view.timelineS.toFixed(0)} s ` +
      '(colour = expression, height = confidence, white line = valence)';
  }
  $('facecount').textContent = current.size ? `(${current.size} in view)` : '(none in view)';
}

function renderBars(box, f) {
  const labels = (list(f.labels).length ? f.labels : view.labels).map(String);
  const scores = list(f.scores).map(num);
  const top = scores.length ? scores.indexOf(Math.max(...scores)) : -1;
  if (box.children.length !== labels.length) {
    box.innerHTML = '';
    for (const label of labels) {
      const row = document.createElement('div');
      row.className = 'bar';
      row.dataset.label = label;
      row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="val"></span>`;
      row.querySelector('.name').textContent = label;
      row.querySelector('.fill').style.background = color(label);
      box.appendChild(row);
    }
  }
  labels.forEach((label, i) => {
    const row = box.children[i];
    const s = scores[i] || 0;
    row.dataset.score = s.toFixed(4);
    row.classList.toggle('top', i === top);
    row.querySelector('.fill').style.width = (100 * s).toFixed(1) + '%';
    row.querySelector('.val').textContent = (100 * s).toFixed(0) + '%';
  });
}

function renderTimeline(canvas, line) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, span = view.timelineS;
  const end = view.stamp || (line.length ? line[line.length - 1][0] : 0);
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.points = String(line.length);
  if (!line.length) return;
  const x = (t) => w - (end - t) / span * w;
  for (let i = 0; i < line.length; i++) {
    const [t, label, c] = line[i];
    const conf = Math.min(1, Math.max(0, num(c)));
    const x0 = x(t), x1 = i + 1 < line.length ? x(line[i + 1][0]) : x0 + 2;
    ctx.fillStyle = color(label);
    ctx.globalAlpha = 0.7;
    ctx.fillRect(x0, h - conf * (h - 4), Math.max(1, Math.min(x1 - x0, 8)), conf * (h - 4));
  }
  ctx.globalAlpha = 1;
  ctx.strokeStyle = '#ffffff';
  ctx.shadowColor = '#000000';
  ctx.shadowBlur = 2;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  line.forEach(([t, , , v], i) => {
    const y = h / 2 - Math.min(1, Math.max(-1, num(v))) * (h / 2 - 3);
    if (i) ctx.lineTo(x(t), y); else ctx.moveTo(x(t), y);
  });
  ctx.stroke();
  ctx.shadowBlur = 0;
}

// ---------------------------------------------------------------- valence / arousal circumplex

function renderAffect() {
  const canvas = $('affect');
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, r = w / 2 - 18, cx = w / 2, cy = h / 2;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#3a3f48';
  ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI); ctx.stroke();
  ctx.beginPath(); ctx.moveTo(cx - r, cy); ctx.lineTo(cx + r, cy); ctx.moveTo(cx, cy - r); ctx.lineTo(cx, cy + r); ctx.stroke();
  ctx.fillStyle = '#8a9099';
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.fillText('aroused', cx, 11); ctx.fillText('calm', cx, h - 3);
  ctx.textAlign = 'right'; ctx.fillText('pleasant', w - 2, cy - 4);
  ctx.textAlign = 'left'; ctx.fillText('unpleasant', 2, cy - 4);
  for (const f of view.faces) {
    if (!Number.isFinite(f.valence) || !Number.isFinite(f.arousal)) continue;
    const px = cx + f.valence * r, py = cy - f.arousal * r;
    ctx.fillStyle = color(f.label);
    ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = '#ffffff'; ctx.textAlign = 'left';
    ctx.fillText('#' + faceId(f), px + 9, py + 4);
  }
}

// ---------------------------------------------------------------- diagnostics and Hue

function renderDiagnostics() {
  const body = $('diagnostics').querySelector('tbody');
  const now = Date.now() / 1000 + view.serverSkew;
  const rows = [...view.diagnostics].sort((a, b) => a.name.localeCompare(b.name));
  body.innerHTML = '';
  for (const s of rows) {
    const v = s.values && typeof s.values === 'object' ? s.values : {};
    const stale = now - num(s.received) > 5;
    const level = stale ? 3 : (Number.isInteger(s.level) ? s.level : -1);
    const tr = document.createElement('tr');
    tr.dataset.node = s.name;
    const cells = [s.name, LEVELS[level] || String(s.level), v.rate_hz || '',
      v.latency_p50_ms ? `${(+v.latency_p50_ms).toFixed(1)} / ${(+v.latency_p95_ms).toFixed(1)}` : '',
      v.dropped || '0', stale ? 'no report for ' + (now - num(s.received)).toFixed(0) + ' s' : s.message];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) td.className = 'lvl-' + level;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

// CIE xy + brightness -> sRGB (the usual Hue conversion), for the swatch only.
function xyToRgb(x, y, bri) {
  if (!y) return 'rgb(255,255,255)';
  const Y = 1, X = Y / y * x, Z = Y / y * (1 - x - y);
  let rgb = [X * 1.656492 - Y * 0.354851 - Z * 0.255038, -X * 0.707196 + Y * 1.655397 + Z * 0.036152,
    X * 0.051713 - Y * 0.121364 + Z * 1.011530];
  const m = Math.max(...rgb, 1e-6);
  rgb = rgb.map((c) => Math.max(0, c / m)).map((c) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055));
  return `rgb(${rgb.map((c) => Math.round(255 * c * (0.25 + 0.75 * bri))).join(',')})`;
}

function renderHue() {
  const box = $('hue');
  const s = view.hue;
  if (!s) return;
  const swatch = s.on ? xyToRgb(num(s.x), num(s.y), num(s.brightness) / 100) : '#000';
  box.innerHTML = '<div class="swatch"></div><div class="text"></div>';
  box.querySelector('.swatch').style.background = swatch;
  const lines = [`${s.event}${s.reason ? ' (' + s.reason + ')' : ''}: ${s.label || 'no expression yet'}`,
    `${s.on ? 'on' : 'off'}, ${fmt(s.brightness, 0)} %, xy ${fmt(s.x, 3)} ${fmt(s.y, 3)}` +
      (list(s.targets).length ? ' → ' + s.targets.join(', ') : ''),
    s.bridge ? `bridge ${s.bridge} ${s.api_version || ''}` : 'dry run (no bridge)'];
  if (s.last_error) lines.push('last error: ' + s.last_error);
  const text = box.querySelector('.text');
  for (const l of lines) { const d = document.createElement('div'); d.textContent = l; text.appendChild(d); }
}

connect();
setInterval(scheduleRender, 1000);  // keeps rates and staleness current when nothing arrives
