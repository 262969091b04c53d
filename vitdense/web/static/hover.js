// vitdense hover engine: answers every pointer move over a source picture in the page.
// Loaded by vitdense/web/hover.py as the js_on_load of a gr.HTML block whose value is the payload
// of one run: {mode, dim, run, images: [{size, grid, stride, patch, scale, q, s}, ...]}, image 0
// the source, the others its targets. q: base64 of deflate(byte-shuffled int16 rows), s: base64
// float32 row scales (row = q * s, unit-normalised). No request reaches the server while hovering.
//
// After a click the server answers with marks instead of pictures (vdMarksInit; see
// vitdense/web/hover.py marks_payload): lettered or numbered markers at its refined points, lines
// from a source point to its match, and the click's heat maps, which the page computes itself.

/* exported vdHoverInit, vdPartsInit, vdMarksInit, vdPageDraws */

// Pictures fill their boxes: once this script runs, the page's CSS enlarges small pictures
// (html.vd-fit: object-fit contain instead of Gradio's scale-down). Gradio's click position
// (gr.SelectData.index) assumes a picture is never enlarged, so a click on an enlarged picture is
// re-sent with the position Gradio's rule turns into the clicked original pixel. Without this
// script nothing is enlarged and Gradio's own rule is right.
//
// A click on a picture that is still loading (the server's answer to the previous click replaces
// it; under load that takes seconds) would reach Gradio with no size to place it and be lost: it
// is held and sent again, at the same place, once the picture has loaded.
function vdFitPictures() {
  if (window.vdFit) return;
  window.vdFit = {remapped: 0, held: 0};
  document.documentElement.classList.add("vd-fit");
  document.addEventListener("click", (e) => {
    const img = e.target;
    if (e.vdRemapped || !img || img.tagName !== "IMG" || !img.closest(".image-container button > .image-frame")) return;
    if (!img.complete || !img.naturalWidth) {
      e.stopPropagation();
      const {clientX, clientY, detail} = e;
      window.vdFit.held += 1;
      img.addEventListener("load", () => img.dispatchEvent(new MouseEvent("click", {
        bubbles: true, cancelable: true, view: window, detail, clientX, clientY})), {once: true});
      return;
    }
    const rc = contentRect(img);
    if (!(rc.s > 1)) return;
    const r = img.getBoundingClientRect();        // Gradio's rule: scale min(..., 1), centred
    const px = (e.clientX - rc.left) / rc.s, py = (e.clientY - rc.top) / rc.s;
    e.stopPropagation();
    const again = new MouseEvent("click", {bubbles: true, cancelable: true, view: window, detail: e.detail,
      clientX: r.left + (r.width - img.naturalWidth) / 2 + px, clientY: r.top + (r.height - img.naturalHeight) / 2 + py});
    again.vdRemapped = true;
    window.vdFit.remapped += 1;
    img.dispatchEvent(again);
  }, true);
}

// "id": the picture of an image component; "id@k": the k-th thumbnail of a gallery
function picture(id) {
  const [gid, k] = id.split("@");
  const el = document.getElementById(gid);
  if (!el) return null;
  if (k === undefined) return el.querySelector("img");
  return el.querySelectorAll(".thumbnail-item img, .gallery-item img")[Number(k)] || null;
}

// where the picture's content sits in the page (object-fit contain / scale-down)
function contentRect(img) {
  const r = img.getBoundingClientRect();
  const fit = getComputedStyle(img).objectFit;
  let s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
  if (fit === "scale-down") s = Math.min(s, 1);
  if (fit === "fill") return {left: r.left, top: r.top, width: r.width, height: r.height, s};
  const w = img.naturalWidth * s, h = img.naturalHeight * s;
  return {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, width: w, height: h, s};
}

// a canvas laid over the picture of component ``id`` (created once, kept on its frame)
function overlay(id, clear = true) {
  const img = picture(id);
  if (!img || !img.naturalWidth) return null;
  const holder = img.parentElement;
  let cv = holder.querySelector("canvas.vd-overlay");
  if (!cv) {
    cv = document.createElement("canvas");
    cv.className = "vd-overlay";
    cv.setAttribute("aria-hidden", "true");
    cv.style.position = "absolute";
    cv.style.pointerEvents = "none";
    cv.style.zIndex = "2";
    holder.appendChild(cv);
    if (getComputedStyle(holder).position === "static") holder.style.position = "relative";
  }
  const rc = contentRect(img), rh = holder.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  const W = Math.max(1, Math.round(rc.width * dpr)), H = Math.max(1, Math.round(rc.height * dpr));
  if (cv.width !== W || cv.height !== H) { cv.width = W; cv.height = H; }
  Object.assign(cv.style, {left: `${rc.left - rh.left}px`, top: `${rc.top - rh.top}px`,
                           width: `${rc.width}px`, height: `${rc.height}px`, display: "block"});
  const ctx = cv.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  if (clear) ctx.clearRect(0, 0, W, H);
  return {cv, ctx, img, W, H, dpr, rc};
}

function vdHoverInit(root, props, watch, sourceId, targetIds) {
  vdFitPictures();
  const TOP = 0.05;                       // the top 5% of each map is coloured, the rest transparent
  const box = () => root.querySelector(".vd-hover") || root;   // re-rendered with each value
  const state = {ready: false, run: null, frames: [], moves: 0, cursor: null, last: null, data: null,
                 pins: [], pinTimes: [], answerTimes: [], clickedAt: null, marked: new Set(),
                 bestCell: null, hoverAt: null};
  window.vdHover = window.vdHover || {};
  window.vdHover[sourceId] = state;

  function b64bytes(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function decode(entry, dim) {
    const [H, W] = entry.size, [h, w] = entry.grid, n = h * w;
    const shuffled = await inflate(b64bytes(entry.q));    // high bytes, then low bytes
    const scales = new Float32Array(b64bytes(entry.s).buffer);
    const rows = new Float32Array(n * dim);
    for (let i = 0; i < n * dim; i++) {
      let v = (shuffled[i] << 8) | shuffled[n * dim + i];
      if (v & 0x8000) v -= 0x10000;
      rows[i] = v * scales[(i / dim) | 0];
    }
    return {H, W, h, w, n, stride: entry.stride, patch: entry.patch, sy: entry.scale[0],
            sx: entry.scale[1], rows};
  }

  // numpy's rint (round half to even), as Geometry.pixel_to_cell
  function rint(v) {
    const f = Math.floor(v), d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function pixelToCell(g, y, x) {
    const gy = ((Math.floor(y) + 0.5) / g.sy - g.patch / 2) / g.stride;
    const gx = ((Math.floor(x) + 0.5) / g.sx - g.patch / 2) / g.stride;
    const i = Math.min(Math.max(rint(gy), 0), g.h - 1), j = Math.min(Math.max(rint(gx), 0), g.w - 1);
    return i * g.w + j;
  }

  function cellCenter(g, c) {
    const i = Math.floor(c / g.w), j = c % g.w;
    return [(i * g.stride + g.patch / 2) * g.sy, (j * g.stride + g.patch / 2) * g.sx];
  }

  // one matrix-vector product: the source cell's row against every target row
  function similarities(src, cell, dst, out) {
    const dim = state.data.dim, q = src.rows, r = dst.rows, o = cell * dim;
    let best = 0, bestV = -Infinity;
    for (let t = 0; t < dst.n; t++) {
      let acc = 0;
      const b = t * dim;
      for (let k = 0; k < dim; k++) acc += q[o + k] * r[b + k];
      out[t] = acc;
      if (acc > bestV) { bestV = acc; best = t; }
    }
    return best;
  }

  function answer(y, x) {
    const d = state.data, src = d.images[0];
    const cell = pixelToCell(src, y, x);
    return {cell, targets: d.targets.map((t, k) => {
      const dst = d.images[t], sims = d.sims[k];
      const best = similarities(src, cell, dst, sims);
      const [by, bx] = cellCenter(dst, best);
      return {best, y: by, x: bx, similarity: sims[best]};
    })};
  }
  state.bestCell = (x, y) => answer(y, x);

  // a line from a source point to its match on another picture: a page-wide canvas over both
  // (``from`` null: cleared and hidden; ``keep``: drawn over the lines already there)
  function link(from, to, color = "#00e5ff", keep = false) {
    let cv = document.getElementById("vd-link");
    if (!cv) {
      cv = Object.assign(document.createElement("canvas"), {id: "vd-link"});
      cv.setAttribute("aria-hidden", "true");
      Object.assign(cv.style, {position: "fixed", left: "0", top: "0", pointerEvents: "none", zIndex: "3"});
      document.body.appendChild(cv);
    }
    const dpr = window.devicePixelRatio || 1, W = window.innerWidth, H = window.innerHeight;
    if (cv.width !== W * dpr || cv.height !== H * dpr) {
      cv.width = W * dpr; cv.height = H * dpr; cv.style.width = `${W}px`; cv.style.height = `${H}px`;
    }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (!keep) ctx.clearRect(0, 0, W, H);
    if (!from) { if (!keep) cv.style.display = "none"; return; }
    cv.style.display = "block";
    ctx.lineWidth = 2; ctx.setLineDash([6, 4]); ctx.strokeStyle = color;
    ctx.shadowColor = "black"; ctx.shadowBlur = 2;
    ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
  }

  // client coordinates of original pixel (y, x) of image g shown by overlay o
  function client(o, g, y, x) {
    return [o.rc.left + x * o.rc.width / g.W, o.rc.top + y * o.rc.height / g.H];
  }

  function hideOverlays() {
    link(null);
    for (const id of new Set([sourceId, ...targetIds, ...state.marked])) {
      const img = picture(id);
      const cv = img && img.parentElement.querySelector("canvas.vd-overlay");
      if (cv) cv.style.display = "none";
    }
  }

  // colour ramp for the top of a map (dark red -> orange -> yellow -> white)
  const STOPS = [[128, 0, 38], [227, 26, 28], [253, 141, 60], [254, 217, 118], [255, 255, 255]];
  function ramp(t) {
    const u = Math.min(Math.max(t, 0), 1) * (STOPS.length - 1), i = Math.min(Math.floor(u), STOPS.length - 2);
    const f = u - i, a = STOPS[i], b = STOPS[i + 1];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
  }

  function heat(o, g, sims, k) {
    const sorted = state.data.sorted[k];
    sorted.set(sims);
    sorted.sort();
    const lo = sorted[Math.floor((1 - TOP) * (g.n - 1))], hi = sorted[g.n - 1];
    const cells = state.data.cells[k];
    const px = cells.data;
    for (let t = 0; t < g.n; t++) {
      const v = (sims[t] - lo) / Math.max(hi - lo, 1e-6);
      if (v < 0) { px[4 * t + 3] = 0; continue; }
      const c = ramp(v);
      px[4 * t] = c[0]; px[4 * t + 1] = c[1]; px[4 * t + 2] = c[2]; px[4 * t + 3] = 110 + 120 * v;
    }
    const small = state.data.small[k];
    small.getContext("2d").putImageData(cells, 0, 0);
    // cell (i, j) covers grid coordinates [i - 0.5, i + 0.5]; to display pixels
    const f = o.W / g.W;
    const y0 = (g.patch / 2 - g.stride / 2) * g.sy * f, x0 = (g.patch / 2 - g.stride / 2) * g.sx * f;
    o.ctx.imageSmoothingEnabled = true;
    o.ctx.drawImage(small, x0, y0, g.w * g.stride * g.sx * f, g.h * g.stride * g.sy * f);
    return [lo, hi];
  }

  function marker(o, g, y, x, color, label) {
    const f = o.W / g.W, r = Math.max(6 * o.dpr, 0.035 * Math.min(o.W, o.H));
    const cx = x * f, cy = y * f, ctx = o.ctx;
    ctx.lineWidth = Math.max(2, r / 4);
    ctx.strokeStyle = "white";
    ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = Math.max(1.5, r / 6);
    ctx.strokeStyle = color;
    ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI); ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(cx - 1.6 * r, cy); ctx.lineTo(cx - 0.5 * r, cy); ctx.moveTo(cx + 0.5 * r, cy); ctx.lineTo(cx + 1.6 * r, cy);
    ctx.moveTo(cx, cy - 1.6 * r); ctx.lineTo(cx, cy - 0.5 * r); ctx.moveTo(cx, cy + 0.5 * r); ctx.lineTo(cx, cy + 1.6 * r);
    ctx.stroke();
    if (label) {
      ctx.font = `bold ${Math.round(1.2 * r)}px sans-serif`;
      ctx.lineWidth = 3; ctx.strokeStyle = "black"; ctx.fillStyle = "white";
      ctx.strokeText(label, cx + 1.1 * r, cy - 1.1 * r); ctx.fillText(label, cx + 1.1 * r, cy - 1.1 * r);
    }
  }

  function cellBox(o, g, c) {
    const [y, x] = cellCenter(g, c), f = o.W / g.W;
    const hy = g.stride * g.sy * f / 2, hx = g.stride * g.sx * f / 2;
    o.ctx.lineWidth = Math.max(2, o.dpr * 1.5);
    o.ctx.strokeStyle = "#00e5ff";
    o.ctx.strokeRect(x * f - hx, y * f - hy, 2 * hx, 2 * hy);
  }

  function readout(text) {
    const el = box().querySelector(".vd-hover-read");
    if (el) el.textContent = text;
  }

  function scaleBar(lo, hi) {
    const el = box().querySelector(".vd-hover-scale");
    if (el) el.innerHTML = `<span>top ${Math.round(TOP * 100)}% of similarities</span><i>${lo.toFixed(2)}</i><b></b><i>${hi.toFixed(2)}</i>`;
  }

  // draw everything for source pixel (y, x); returns the answer
  function show(y, x, announce) {
    const d = state.data, src = d.images[0];
    const ans = answer(y, x);
    let range = null, end = null;
    ans.targets.forEach((t, k) => {      // each target: the top of its map, and its best cell (the peak)
      const o = overlay(targetIds[k % targetIds.length]);
      if (!o) return;
      const g = d.images[d.targets[k]];
      range = heat(o, g, d.sims[k], k);
      marker(o, g, t.y, t.x, "#00e5ff", d.mode === "correspondences" ? "" : "peak");
      end = client(o, g, t.y, t.x);
    });
    const a = overlay(sourceId, !targetIds.includes(sourceId));    // the cell under the pointer
    if (a) cellBox(a, src, ans.cell);
    if (a && end && d.mode === "correspondences" && ans.targets.length === 1) {
      const [cy, cx] = cellCenter(src, ans.cell);
      link(client(a, src, cy, cx), end);
    }
    if (range) scaleBar(range[0], range[1]);
    state.last = {x, y, ...ans};
    if (announce) {
      const t = ans.targets[0];
      const [cy, cx] = cellCenter(src, ans.cell);
      readout(`Source cell at x=${Math.round(cx)}, y=${Math.round(cy)}: ` + ans.targets.map((t, k) =>
        `best on picture ${d.targets[k] + 1} at x=${Math.round(t.x)}, y=${Math.round(t.y)} ` +
        `(similarity ${t.similarity.toFixed(2)})`).join("; ") + ".");
    }
    return ans;
  }

  // the heat map of source pixel yx over image i of the payload, on overlay o
  function heatAt(o, i, yx) {
    const d = state.data, k = d.targets.indexOf(i);
    if (k < 0) return;
    const src = d.images[0], g = d.images[i];
    similarities(src, pixelToCell(src, yx[0], yx[1]), g, d.sims[k]);
    heat(o, g, d.sims[k], k);
  }

  // the server's marks of the clicks so far (window.vdMarks[sourceId], vdMarksInit): ``all``
  // redraws every picture they name, heat maps included; otherwise (during a hover, which has just
  // redrawn the source and the targets) only the markers and lines over those pictures
  function drawMarks(all) {
    const m = state.ready && (window.vdMarks || {})[sourceId];
    if (!m) return;
    const hovered = new Set([sourceId, ...targetIds]), fresh = new Set();
    if (all) state.marked = fresh;        // (hideOverlays hides them when the marks change)
    if (all) {
      for (const h of m.heats || []) {
        const o = overlay(h.id, !fresh.has(h.id));
        if (o) { heatAt(o, h.image, h.source); fresh.add(h.id); }
      }
    }
    for (const p of m.pictures || []) {
      if (!all && !hovered.has(p.id)) continue;
      const o = overlay(p.id, all && !fresh.has(p.id));
      if (o) { drawMarkList(o, p); fresh.add(p.id); }
    }
    for (const l of m.lines || []) {
      if (!fresh.has(l.from) || !fresh.has(l.to)) continue;
      const oa = overlay(l.from, false), ob = overlay(l.to, false);
      if (!oa || !ob) continue;
      const ga = {W: l.sizes[0][1], H: l.sizes[0][0]}, gb = {W: l.sizes[1][1], H: l.sizes[1][0]};
      link(client(oa, ga, l.a[0], l.a[1]), client(ob, gb, l.b[0], l.b[1]), l.color, true);
    }
  }

  // everything drawn again: the marks, then the clicks not yet answered (``answered``: the
  // server's marks just arrived, so those clicks are answered)
  function redraw(answered) {
    if (!state.ready) return;
    if (answered) state.pins = [];
    if (answered && state.clickedAt !== null) {       // click -> the server's marks drawn (ms)
      state.answerTimes.push(performance.now() - state.clickedAt);
      state.clickedAt = null;
    }
    hideOverlays();
    drawMarks(true);
    drawPins();
  }
  state.redraw = redraw;

  // a click is answered at once in the page (the cell's best match, magenta) until the server's
  // refined answer arrives: its marks (redraw), or a new picture of that target (its src changes)
  function drawPins() {
    const d = state.data;
    state.pins = state.pins.filter((p) => p.srcs.every((src, k) => (picture(targetIds[k]) || {}).src === src));
    for (const p of state.pins) {
      p.ans.targets.forEach((t, k) => {
        const o = overlay(targetIds[k % targetIds.length], false);
        if (o) marker(o, d.images[d.targets[k]], t.y, t.x, "#ff00ff", "");
      });
    }
  }

  // the source pixel (y, x) under a pointer event on the source picture, or null
  function pointed(e) {
    const img = state.ready ? picture(sourceId) : null;
    return img && e.target === img ? sourcePixel(img, e.clientX, e.clientY) : null;
  }

  function onClick(e) {
    if (e.vdRemapped) return;
    const p = pointed(e);
    if (!p) return;
    const ans = show(p[0], p[1], true);
    state.pins.push({ans, srcs: ans.targets.map((_, k) => (picture(targetIds[k % targetIds.length]) || {}).src)});
    drawPins();
    state.pinTimes.push(performance.now() - e.timeStamp);
    if (state.clickedAt === null) state.clickedAt = e.timeStamp;
  }

  function onLoad(e) {        // a new picture from the server: stale pins go, the marks are refitted
    if (!state.ready || e.target.tagName !== "IMG") return;
    if (!state.pins.length && !(window.vdMarks || {})[sourceId]) return;
    redraw(false);
  }

  let pending = false;        // scrolling or resizing moves the pictures under the page-wide lines
  function onScroll() {
    if (pending || !state.ready || !(window.vdMarks || {})[sourceId]) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; redraw(false); });
  }

  function sourcePixel(img, clientX, clientY) {
    if (!img.naturalWidth) return null;             // still loading: its click is held (vdFitPictures)
    const rc = contentRect(img);
    const x = Math.round((clientX - rc.left) / rc.s), y = Math.round((clientY - rc.top) / rc.s);
    if (x < 0 || y < 0 || x >= img.naturalWidth || y >= img.naturalHeight) return null;
    const g = state.data.images[0];     // displayed picture -> original pixels
    return [y * g.H / img.naturalHeight, x * g.W / img.naturalWidth];
  }

  function onMove(e) {
    const p = pointed(e);
    if (!p) return;
    show(p[0], p[1], false);
    drawMarks(false);
    if (state.pins.length) drawPins();
    state.moves += 1;
    state.frames.push(performance.now() - e.timeStamp);
    if (state.frames.length > 1000) state.frames.shift();
  }

  function onLeave(e) {
    if (state.ready && e.target === picture(sourceId)) redraw(false);
  }

  function onKey(e) {
    if (!state.ready) return;
    const g = state.data.images[0];
    let c = state.cursor === null ? Math.floor(g.h / 2) * g.w + Math.floor(g.w / 2) : state.cursor;
    let i = Math.floor(c / g.w), j = c % g.w;
    const moves = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};
    if (e.key in moves) {
      i = Math.min(Math.max(i + moves[e.key][0], 0), g.h - 1);
      j = Math.min(Math.max(j + moves[e.key][1], 0), g.w - 1);
    } else if ((e.key === "Enter" || e.key === " ") && state.cursor !== null) {
      pin(state.cursor);
    } else if (e.key === "Escape") {
      redraw(false); return;
    } else {
      return;
    }
    e.preventDefault();
    state.cursor = c = i * g.w + j;
    const [y, x] = cellCenter(g, c);
    show(y, x, true);
  }

  // the server's refined answer for a cell: a click on the source picture at the cell's centre
  function pin(c) {
    const img = picture(sourceId), g = state.data.images[0];
    if (!img) return;
    const [y, x] = cellCenter(g, c), rc = contentRect(img);
    const px = x * img.naturalWidth / g.W, py = y * img.naturalHeight / g.H;
    img.dispatchEvent(new MouseEvent("click", {bubbles: true, clientX: rc.left + px * rc.s,
                                               clientY: rc.top + py * rc.s}));
  }

  async function load() {
    const v = props.value;
    if (!v || !v.images) { state.ready = false; state.data = null; hideOverlays(); box().classList.remove("ready"); return; }
    if (v.run === state.run && state.ready) return;
    state.ready = false;
    const images = await Promise.all(v.images.map((e) => decode(e, v.dim)));
    const ids = v.targets || images.map((_, i) => i).slice(1);
    const targets = ids.map((i) => images[i]);
    state.data = {mode: v.mode, dim: v.dim, images, targets: ids,
                  sims: targets.map((g) => new Float32Array(g.n)),
                  sorted: targets.map((g) => new Float32Array(g.n)),
                  cells: targets.map((g) => new ImageData(g.w, g.h)),
                  small: targets.map((g) => Object.assign(document.createElement("canvas"), {width: g.w, height: g.h}))};
    state.run = v.run; state.cursor = null; state.frames = []; state.moves = 0; state.pins = [];
    state.ready = true;
    box().classList.add("ready");
    redraw(false);
  }

  document.addEventListener("pointermove", onMove, {passive: true});
  document.addEventListener("pointerout", onLeave, {passive: true});
  document.addEventListener("click", onClick, true);
  document.addEventListener("load", onLoad, true);
  window.addEventListener("scroll", onScroll, {passive: true, capture: true});
  window.addEventListener("resize", onScroll, {passive: true});
  root.addEventListener("keydown", onKey);
  watch("value", load);
  load();
}

// Whether the page draws the answer to a click on ``sourceId`` (its hover engine or its parts
// highlight is ready): a click event's js sends this, and the server then answers with marks
// (vdMarksInit) or the page's own highlight instead of pictures.
function vdPageDraws(sourceId) {
  const h = (window.vdHover || {})[sourceId];
  if (h) return Boolean(h.ready);
  const p = window.vdParts;
  return Boolean(p && p.ready && p.sourceId === sourceId);
}

// The server's marks after a click, for the hover engine of ``sourceId`` to draw (props.value:
// vitdense/web/hover.py marks_payload, or null when the server drew the pictures itself).
function vdMarksInit(root, props, watch, sourceId) {
  window.vdMarks = window.vdMarks || {};
  function apply() {
    const v = props.value;
    window.vdMarks[sourceId] = v && v.pictures ? v : null;
    const h = (window.vdHover || {})[sourceId];
    if (h && h.redraw) h.redraw(true);
    const p = window.vdParts;
    if (p && p.sourceId === sourceId && p.mark) p.mark(v && "highlight" in v ? v : null);
  }
  watch("value", apply);
  apply();
}

// rgb of "#rrggbb"
function rgbOf(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// One picture's marks (p: {id, size: [H, W], marks: [{y, x, label, color}], avoid: [[x0, y0, x1,
// y1], ...]}, original pixels) on overlay o, as vitdense.draw.draw_markers draws them: a filled
// circle in the mark's colour with its label inside, sized to the displayed picture; where that
// would cover another label or the picture's own (``avoid``), the label moves to the nearest free
// place around its point, joined to a dot at the point by a line. A mark without a label is a
// small ring drawn over the others (a query point).
function drawMarkList(o, p) {
  const f = o.W / p.size[1], ctx = o.ctx;
  const r = Math.max(8 * o.dpr, 0.022 * Math.max(o.W, o.H));
  const taken = (p.avoid || []).map((b) => b.map((v) => v * f));
  const rings = p.marks.filter((m) => !m.label);
  p = {...p, marks: p.marks.filter((m) => m.label)};
  const dots = p.marks.map((m) => [m.x * f, m.y * f]);
  const hit = (b) => taken.some((t) => b[0] < t[2] && t[0] < b[2] && b[1] < t[3] && t[1] < b[3]);
  const inside = (b) => b[0] >= 0 && b[1] >= 0 && b[2] <= o.W && b[3] <= o.H;
  ctx.font = `bold ${Math.round(1.1 * r)}px sans-serif`;
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  const placed = p.marks.map((m, i) => {
    const [x, y] = dots[i], w = Math.max(2 * r, ctx.measureText(m.label).width + 0.8 * r), h = 2 * r;
    let best = null;
    for (const d of [0, 2.6, 4.2, 6]) {
      for (let a = 0; a < (d ? 8 : 1) && !best; a++) {
        const cx = x + d * r * Math.cos(-Math.PI / 4 + a * Math.PI / 4), cy = y + d * r * Math.sin(-Math.PI / 4 + a * Math.PI / 4);
        const b = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
        if (inside(b) && !hit(b)) best = b;
      }
      if (best) break;
    }
    best = best || [x - w / 2, y - h / 2, x + w / 2, y + h / 2];
    taken.push(best);
    return best;
  });
  p.marks.forEach((m, i) => {
    const [x, y] = dots[i], b = placed[i], cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
    const moved = Math.hypot(cx - x, cy - y) > 0.5 * r;
    ctx.lineWidth = Math.max(1.5, r / 5); ctx.strokeStyle = "white"; ctx.fillStyle = m.color;
    if (moved) {
      ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(cx, cy); ctx.stroke();
      ctx.beginPath(); ctx.arc(x, y, Math.max(2.5 * o.dpr, r / 3), 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
    ctx.beginPath();
    if (b[2] - b[0] > 2 * r + 1) ctx.roundRect(b[0], b[1], b[2] - b[0], b[3] - b[1], r);
    else ctx.arc(cx, cy, r, 0, 2 * Math.PI);
    ctx.fill(); ctx.stroke();
    const [R, G, B] = rgbOf(m.color);
    ctx.fillStyle = 0.299 * R + 0.587 * G + 0.114 * B > 140 ? "black" : "white";
    ctx.fillText(m.label, cx, cy + 0.05 * r);
  });
  for (const m of rings) {
    for (const [color, width] of [["black", Math.max(3, r / 3)], [m.color, Math.max(1.5, r / 6)]]) {
      ctx.lineWidth = width; ctx.strokeStyle = color;
      ctx.beginPath(); ctx.arc(m.x * f, m.y * f, 0.6 * r, 0, 2 * Math.PI); ctx.stroke();
    }
  }
}

// Parts tab: a click on the picture highlights the part under it at once in the page (the other
// parts and the background dimmed over the picture and every gallery thumbnail). The server then
// confirms it (vdMarksInit: {highlight}, kept over new pictures of the same result), or draws the
// highlight into its pictures itself (marks null: the page's veil goes when they arrive).
// props.value: {run, index (the clicked picture's image), maps: [base64 PNG of each image's label
// map, 0 = background]}.
function vdPartsInit(root, props, watch, sourceId, galleryId) {
  vdFitPictures();
  const state = {ready: false, maps: [], index: 0, pinTimes: [], answerTimes: [], clickedAt: null, shown: 0,
                 sourceId, pinned: null};
  window.vdParts = state;

  async function labels(b64) {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const cv = Object.assign(document.createElement("canvas"), {width: img.width, height: img.height});
    const ctx = cv.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, img.width, img.height).data;
    const out = new Uint8Array(img.width * img.height);
    for (let i = 0; i < out.length; i++) out[i] = rgba[4 * i];
    return {W: img.width, H: img.height, labels: out};
  }

  // a veil over every pixel of map m that is not part p (cached per image and part)
  function veil(m, p) {
    m.veils = m.veils || {};
    if (!m.veils[p]) {
      const cv = Object.assign(document.createElement("canvas"), {width: m.W, height: m.H});
      const ctx = cv.getContext("2d"), im = ctx.createImageData(m.W, m.H);
      for (let i = 0; i < m.labels.length; i++) im.data[4 * i + 3] = m.labels[i] === p ? 0 : 150;
      ctx.putImageData(im, 0, 0);
      m.veils[p] = cv;
    }
    return m.veils[p];
  }

  function paint(id, m, p) {
    const o = overlay(id);
    if (!o) return;
    o.ctx.drawImage(veil(m, p), 0, 0, o.W, o.H);
    o.img.dataset.vdSrc = o.img.src;
  }

  function clearAll() {
    document.querySelectorAll(`#${sourceId} canvas.vd-overlay, #${galleryId} canvas.vd-overlay`)
      .forEach((cv) => { cv.style.display = "none"; });
  }

  function paintAll(p) {     // part p dimmed around in the picture and every thumbnail (0: none)
    clearAll();
    if (!state.ready || !p) return;
    paint(sourceId, state.maps[state.index], p);
    state.maps.forEach((mk, k) => paint(`${galleryId}@${k}`, mk, p));
  }

  state.mark = (v) => {      // the server's answer (vdMarksInit)
    state.pinned = v ? v.highlight : null;
    if (v && state.clickedAt !== null) {              // click -> the server's answer drawn (ms)
      state.answerTimes.push(performance.now() - state.clickedAt);
      state.clickedAt = null;
    }
    if (state.pinned !== null) paintAll(state.pinned);
    else clearAll();
  };
  function onClick(e) {
    if (!state.ready || e.vdRemapped) return;
    const img = picture(sourceId);
    if (!img || e.target !== img) return;
    const rc = contentRect(img), m = state.maps[state.index];
    const x = Math.round((e.clientX - rc.left) / rc.s), y = Math.round((e.clientY - rc.top) / rc.s);
    if (!m || x < 0 || y < 0 || x >= m.W || y >= m.H) return;
    const p = m.labels[y * m.W + x];
    state.shown = p;
    paintAll(p);
    state.pinTimes.push(performance.now() - e.timeStamp);
    if (state.clickedAt === null) state.clickedAt = e.timeStamp;
  }

  // new pictures: the highlight the page draws is drawn over them again, and one it drew before
  // the server's own pictures arrived goes (they have it drawn in)
  function onLoad(e) {
    if (e.target.tagName !== "IMG" || !e.target.closest(`#${sourceId}, #${galleryId}`)) return;
    if (state.pinned !== null) { paintAll(state.pinned); return; }
    if (e.target.dataset.vdSrc && e.target.dataset.vdSrc !== e.target.src) {
      const cv = e.target.parentElement.querySelector("canvas.vd-overlay");
      if (cv) cv.style.display = "none";
    }
  }

  async function load() {
    const v = props.value;
    state.ready = false;
    clearAll();
    if (!v || !v.maps) return;
    state.maps = await Promise.all(v.maps.map(labels));
    state.index = v.index || 0;
    state.ready = true;
    if (state.pinned !== null) paintAll(state.pinned);
  }

  document.addEventListener("click", onClick, true);
  document.addEventListener("load", onLoad, true);
  watch("value", load);
  load();
}

window.vdPageDraws = vdPageDraws;     // (the script runs in a function: the click events' js reads it here)
