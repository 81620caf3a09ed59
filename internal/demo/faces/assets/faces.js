// Faces GUI: a 4x4 grid of cells, each polling the face service on its own
// schedule and drawing what comes back. Behaviour follows the upstream Faces
// 1.4.x page; see reference/demo-apps.md section 1.7.
(function () {
  'use strict';

  const ROWS = 4, COLS = 4;
  const PERIOD_MS = 2000;      // a cell asks again 2 s after it last asked
  const FADE_START_MS = 2000;  // a reply older than this starts to fade...
  const FADE_END_MS = 2500;    // ...and is gone by this age ("slow service")
  const WATCH_MS = 200;        // watcher tick
  const TIMEOUT_LIMIT = 4;     // more timeouts in a row than this: sleeping face
  const BLINK_MS = 50;
  const POD_IDLE_MS = 30000;

  const EMOJI = {
    grinning: '\u{1F603}', sleeping: '\u{1F634}', confused: '\u{1F615}',
    neutral: '\u{1F610}', upset: '\u{1F62C}', cursing: '\u{1F92C}', kaboom: '\u{1F92F}',
  };
  const COLOR = {
    grey: '#BBBBBB', blue: '#66CCEE', red: '#EE6677', yellow: '#CCBB44', purple: '#AA3377',
  };

  const ds = document.body.dataset;
  const cfg = {
    color: ds.color || 'white',
    hideKey: ds.hideKey === 'true',
    showPods: ds.showPods === 'true',
    user: ds.user || 'unknown',
    userHeader: ds.userHeader || 'X-Faces-User',
  };

  // The services send smileys as HTML entities ("&#x1F603;"). Decode them
  // ourselves rather than through innerHTML: the text comes off the network.
  function decodeSmiley(s) {
    if (typeof s !== 'string') return EMOJI.confused;
    return s.replace(/&#x([0-9a-fA-F]{1,6});|&#([0-9]{1,7});/g, function (m, hex, dec) {
      const cp = hex ? parseInt(hex, 16) : parseInt(dec, 10);
      return cp > 0 && cp <= 0x10FFFF ? String.fromCodePoint(cp) : '';
    });
  }
  function safeColor(c) {
    return typeof c === 'string' && /^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{1,20})$/.test(c) ? c : COLOR.purple;
  }
  function same(a, b) {
    return a.smiley === b.smiley && a.bg === b.bg && a.border === b.border;
  }

  const stats = { total: 0, ok: 0, face: 0, smiley: 0, color: 0, timeout: 0, limited: 0, latency: 0 };
  let running = false;
  let watcher = null;

  // ---- cells -------------------------------------------------------------

  function Cell(row, col, slot) {
    this.row = row;
    this.col = col;
    this.el = document.createElement('div');
    this.el.className = 'cell';
    this.el.id = 'cell-' + row + '-' + col;
    this.face = document.createElement('span');
    this.face.className = 'smiley';
    this.el.appendChild(this.face);
    slot.appendChild(this.el);
    this.gen = 0;            // bumped by start/stop so stale replies don't reschedule
    this.timer = null;
    this.lastUpdated = null; // ms timestamp of the last reply; null until the first
    this.timeouts = 0;
    this.lastStatus = 0;
    this.data = { smiley: '', bg: COLOR.grey, border: COLOR.grey };    // what the last reply says
    this.drawn = { smiley: '', bg: COLOR.grey, border: COLOR.grey };   // what is on screen
    this.blinking = false;
    this.el.dataset.status = 'none';
    this.el.dataset.timeouts = '0';
  }

  Cell.prototype.url = function () {
    const center = this.row >= 1 && this.row <= 2 && this.col >= 1 && this.col <= 2;
    return (center ? '../face/center/' : '../face/edge/') +
      '?row=' + this.row + '&col=' + this.col + '&now=' + encodeURIComponent(new Date().toISOString());
  };

  Cell.prototype.start = function (delay) {
    this.stop();
    const gen = this.gen;
    this.timer = setTimeout(() => this.fetch(gen), Math.max(0, delay));
  };

  Cell.prototype.stop = function () {
    this.gen++;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  };

  Cell.prototype.fetch = function (gen) {
    this.timer = null;
    const started = performance.now();
    const xhr = new XMLHttpRequest();
    const finish = (status) => {
      const latency = performance.now() - started;
      this.reply(status, status === 0 ? '' : xhr.responseText, status === 0 ? null : xhr.getResponseHeader('X-Faces-Pod'), latency);
      if (running && gen === this.gen) {
        this.timer = setTimeout(() => this.fetch(gen), Math.max(0, PERIOD_MS - latency));
      }
    };
    xhr.onload = () => finish(xhr.status);
    xhr.onerror = () => finish(0);
    xhr.onabort = () => finish(0);
    try {
      xhr.open('GET', this.url());
      xhr.withCredentials = true;
      xhr.setRequestHeader('Cache-Control', 'no-cache, no-store, max-age=0');
      xhr.setRequestHeader(cfg.userHeader, cfg.user);
      xhr.setRequestHeader('X-Custom-Header', 'custom');
      xhr.send();
    } catch (e) {
      finish(0);
    }
  };

  // reply applies one face reply (status 0 = network error) per the table
  // in the spec: what to draw, and what happens to the timeout counter.
  Cell.prototype.reply = function (status, text, pod, latency) {
    this.lastUpdated = Date.now();
    stats.total++;
    stats.latency = latency;
    let data = null;
    if (status === 200) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
      if (!data || typeof data !== 'object') {
        data = null;
        stats.face++;
        this.show(EMOJI.confused, COLOR.purple, COLOR.purple);
        this.timeouts = 0;
      } else {
        let timedOut = false;
        let smiley = decodeSmiley(data.smiley);
        let bg = safeColor(data.color);
        // Legacy faces send the literal "504" for a timed-out backend:
        // keep that half of the cell and count a timeout.
        if (data.smiley === '504') { smiley = this.data.smiley; timedOut = true; }
        if (data.color === '504') { bg = this.data.bg; timedOut = true; }
        const errors = Array.isArray(data.errors) ? data.errors : [];
        this.show(smiley, bg, errors.length > 0 ? COLOR.purple : COLOR.grey);
        this.timeouts = timedOut ? this.timeouts + 1 : 0;
        this.count(errors, smiley);
      }
    } else if (status === 504 || status === 429) {
      stats[status === 504 ? 'timeout' : 'limited']++;
      this.timeouts++;
    } else if (status === 599) {
      stats.face++;
      this.show(EMOJI.neutral, COLOR.yellow, COLOR.grey);
      this.timeouts = 0;
    } else if (status >= 500 && status <= 599) {
      stats.face++;
      this.show(EMOJI.confused, COLOR.purple, COLOR.grey);
      this.timeouts = 0;
    } else if (status === 0) {
      stats.face++;
      this.show(EMOJI.confused, COLOR.purple, COLOR.grey);
    } else {
      stats.face++;
      this.show(EMOJI.upset, COLOR.purple, COLOR.grey);
      this.timeouts = 0;
    }
    this.lastStatus = status;
    this.el.dataset.status = String(status);
    this.el.dataset.timeouts = String(this.timeouts);
    pods.seen(pod, status, data);
    renderStats();
  };

  Cell.prototype.count = function (errors, smiley) {
    if (errors.length === 0) { stats.ok++; return; }
    if (smiley === EMOJI.kaboom) { stats.limited++; return; }
    let any = false;
    for (const e of errors) {
      if (typeof e !== 'string') continue;
      if (e.startsWith('smiley')) { stats.smiley++; any = true; }
      if (e.startsWith('color')) { stats.color++; any = true; }
      if (/504|timed? ?out/i.test(e)) { stats.timeout++; }
    }
    if (!any) stats.limited++;
  };

  // show sets the data a reply carries and draws it, blinking if it changed.
  Cell.prototype.show = function (smiley, bg, border) {
    this.data = { smiley: smiley, bg: bg, border: border };
    if (same(this.data, this.drawn) && this.timeouts <= TIMEOUT_LIMIT) {
      if (!this.blinking) this.el.style.opacity = '1';
      return;
    }
    const want = this.data;
    this.blinking = true;
    this.el.style.opacity = '0';
    setTimeout(() => {
      this.blinking = false;
      this.draw(want);
      this.el.style.opacity = '1';
    }, BLINK_MS);
  };

  Cell.prototype.draw = function (d) {
    if (same(d, this.drawn)) return;
    this.face.textContent = d.smiley;
    this.el.style.background = d.bg;
    this.el.style.borderColor = d.border;
    this.el.dataset.smiley = d.smiley;
    this.el.dataset.bg = d.bg;
    this.drawn = { smiley: d.smiley, bg: d.bg, border: d.border };
  };

  // tick is the watcher's work for one cell: too many timeouts draw a faint
  // sleeping face; otherwise the cell fades as its last reply ages.
  Cell.prototype.tick = function (now) {
    if (this.blinking || this.lastUpdated === null) return;
    if (this.timeouts > TIMEOUT_LIMIT) {
      this.draw(this.lastStatus === 599
        ? { smiley: EMOJI.neutral, bg: COLOR.yellow, border: COLOR.grey }
        : { smiley: EMOJI.sleeping, bg: COLOR.red, border: COLOR.grey });
      this.el.style.opacity = '0.2';
      return;
    }
    this.draw(this.data);
    const age = now - this.lastUpdated;
    let opacity = 1;
    if (age > FADE_END_MS) opacity = 0;
    else if (age > FADE_START_MS) opacity = 1 - (age - FADE_START_MS) / (FADE_END_MS - FADE_START_MS);
    this.el.style.opacity = String(opacity);
  };

  // ---- pods --------------------------------------------------------------

  const pods = {
    list: document.getElementById('podlist'),
    byName: new Map(),
    seen: function (pod, status, data) {
      if (!pod || pod.startsWith('faces-')) return;
      let p = this.byName.get(pod);
      if (!p) {
        p = { el: document.createElement('div'), mini: document.createElement('span'), face: document.createElement('span') };
        p.el.className = 'pod';
        p.el.dataset.pod = pod;
        p.mini.className = 'mini';
        p.face.className = 'smiley';
        p.mini.appendChild(p.face);
        const name = document.createElement('span');
        name.className = 'name';
        const parts = pod.split('-');
        name.textContent = parts.length > 1 ? parts[0] + '-' + parts[parts.length - 1] : pod;
        name.title = pod;
        p.el.append(p.mini, name);
        this.list.appendChild(p.el);
        this.byName.set(pod, p);
      }
      let smiley = EMOJI.upset, bg = COLOR.purple, border = COLOR.grey;
      if (status === 200 && data) {
        smiley = decodeSmiley(data.smiley);
        bg = safeColor(data.color);
        if (Array.isArray(data.errors) && data.errors.length > 0) border = COLOR.purple;
      } else if (status === 599) {
        smiley = EMOJI.neutral; bg = COLOR.yellow;
      } else if (status === 429) {
        smiley = EMOJI.sleeping; bg = COLOR.red;
      }
      p.face.textContent = smiley;
      p.mini.style.background = bg;
      p.mini.style.borderColor = border;
      p.opacity = 1;
      p.el.style.opacity = '1';
      p.last = Date.now();
    },
    tick: function (now) {
      for (const [name, p] of this.byName) {
        if (now - p.last > POD_IDLE_MS) {
          p.el.remove();
          this.byName.delete(name);
          continue;
        }
        p.opacity = Math.max(0.1, p.opacity - 0.1);
        p.el.style.opacity = String(p.opacity);
      }
    },
  };

  // ---- page --------------------------------------------------------------

  const statEls = {};
  for (const k of Object.keys(stats)) statEls[k] = document.getElementById('stat-' + k);
  function renderStats() {
    for (const k of Object.keys(stats)) {
      if (!statEls[k]) continue;
      statEls[k].textContent = k === 'latency' ? String(Math.round(stats.latency)) : String(stats[k]);
    }
  }

  const grid = document.getElementById('grid');
  const cells = [];
  for (let r = 0; r < ROWS; r++) {
    for (let c = 0; c < COLS; c++) {
      const slot = document.createElement('div');
      slot.className = 'slot';
      grid.appendChild(slot);
      cells.push(new Cell(r, c, slot));
    }
  }

  function start() {
    running = true;
    // Stagger the first requests so the grid fills in a sweep.
    for (const cell of cells) cell.start(cell.row * 500 + cell.col * 125);
    if (watcher === null) {
      watcher = setInterval(() => {
        const now = Date.now();
        for (const cell of cells) cell.tick(now);
        pods.tick(now);
      }, WATCH_MS);
    }
    runBtn.textContent = 'Stop';
    runBtn.classList.remove('stopped');
  }

  function stop() {
    running = false;
    for (const cell of cells) cell.stop();
    if (watcher !== null) clearInterval(watcher);
    watcher = null;
    runBtn.textContent = 'Start';
    runBtn.classList.add('stopped');
  }

  document.body.style.background = cfg.color;
  const userEl = document.getElementById('user');
  if (cfg.user === 'unknown') userEl.classList.add('unknown');

  const legend = document.getElementById('legend');
  legend.hidden = cfg.hideKey;

  const runBtn = document.getElementById('run');
  runBtn.addEventListener('click', () => (running ? stop() : start()));

  const statsEl = document.getElementById('stats');
  const countersBtn = document.getElementById('counters');
  countersBtn.addEventListener('click', () => {
    statsEl.hidden = !statsEl.hidden;
    countersBtn.textContent = statsEl.hidden ? 'Show Counters' : 'Hide Counters';
  });

  const podcol = document.getElementById('podcol');
  const podsBtn = document.getElementById('pods');
  function setPods(show) {
    podcol.hidden = !show;
    podsBtn.textContent = show ? 'Hide Pods' : 'Show Pods';
  }
  podsBtn.addEventListener('click', () => setPods(podcol.hidden));
  setPods(cfg.showPods);

  // For tests and the curious: the live state of the page.
  window.faces = { cells: cells, stats: stats, isRunning: () => running, start: start, stop: stop };

  start();
})();
