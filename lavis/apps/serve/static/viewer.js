"use strict";
// A small pan-and-zoom viewer on a canvas, for one picture (an uploaded tile) or a DeepZoom pyramid
// (a slide: OpenSlide's tiles from /slides/{id}_files/...). Coordinates are level-0 pixels of the
// slide (the picture's pixels for a tile). It draws the regions asked about and the overlays that
// lavis.slides wrote (tiles coloured by score), and in region mode turns a drag or a click into a
// square region. Our own code: the page loads nothing from anywhere but this server.

const YES_RGB = [214, 39, 40], NO_RGB = [31, 119, 180];

class Viewer {
  constructor(canvas, { onRegion = () => {}, fetchTile = null } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onRegion = onRegion;
    this.fetchTile = fetchTile;  // (url) -> Promise<ImageBitmap>, with the page's API key
    this.source = null;          // {kind: "image", bitmap, width, height} | {kind: "deepzoom", ...}
    this.view = { cx: 0, cy: 0, scale: 1 };
    this.regions = [];
    this.overlays = [];
    this.drawMode = false;
    this.tiles = new Map();
    this.tilesDrawn = 0;
    this.pointers = new Map();
    this.pending = false;
    this.listen();
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  setImage(bitmap) {
    this.source = { kind: "image", bitmap, width: bitmap.width, height: bitmap.height };
    this.reset();
  }

  setDeepZoom(width, height, tileSize, overlap, tileUrl) {
    const maxLevel = Math.ceil(Math.log2(Math.max(width, height, 1)));
    this.source = { kind: "deepzoom", width, height, tileSize, overlap, tileUrl, maxLevel };
    this.reset();
  }

  reset() {
    this.tiles = new Map();
    this.regions = [];
    this.overlays = [];
    this.fit();
  }

  resize() {
    const box = this.canvas.getBoundingClientRect();
    if (box.width && box.height && (this.canvas.width !== Math.round(box.width) || this.canvas.height !== Math.round(box.height))) {
      this.canvas.width = Math.round(box.width);
      this.canvas.height = Math.round(box.height);
      if (!this.fitted) this.fit(); else this.redraw();
    }
  }

  fit() {
    if (!this.source || !this.canvas.width) { this.redraw(); return; }
    const { width, height } = this.source;
    this.view = { cx: width / 2, cy: height / 2, scale: Math.min(this.canvas.width / width, this.canvas.height / height) * 0.95 };
    this.fitted = true;
    this.redraw();
  }

  // ---- coordinates -------------------------------------------------------------------------
  toScreen(x, y) {
    const v = this.view;
    return [(x - v.cx) * v.scale + this.canvas.width / 2, (y - v.cy) * v.scale + this.canvas.height / 2];
  }

  toSlide(sx, sy) {
    const v = this.view;
    return [(sx - this.canvas.width / 2) / v.scale + v.cx, (sy - this.canvas.height / 2) / v.scale + v.cy];
  }

  zoomBy(factor, sx = this.canvas.width / 2, sy = this.canvas.height / 2) {
    if (!this.source) return;
    const [x, y] = this.toSlide(sx, sy);
    const fitScale = Math.min(this.canvas.width / this.source.width, this.canvas.height / this.source.height);
    const scale = Math.min(Math.max(this.view.scale * factor, fitScale / 4), 8);
    this.view = { scale, cx: x - (sx - this.canvas.width / 2) / scale, cy: y - (sy - this.canvas.height / 2) / scale };
    this.redraw();
  }

  panBy(dx, dy) {
    this.view.cx -= dx / this.view.scale;
    this.view.cy -= dy / this.view.scale;
    this.redraw();
  }

  // ---- input -------------------------------------------------------------------------------
  listen() {
    const c = this.canvas;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = c.getBoundingClientRect();
      this.zoomBy(Math.exp(-e.deltaY / 300), e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
    c.addEventListener("dblclick", (e) => {
      const box = c.getBoundingClientRect();
      this.zoomBy(2, e.clientX - box.left, e.clientY - box.top);
    });
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      const box = c.getBoundingClientRect();
      this.pointers.set(e.pointerId, [e.clientX - box.left, e.clientY - box.top]);
      if (this.drawMode && this.pointers.size === 1) this.drawing = { start: this.toSlide(...this.pointers.get(e.pointerId)), end: null };
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.pointers.has(e.pointerId)) return;
      const box = c.getBoundingClientRect();
      const now = [e.clientX - box.left, e.clientY - box.top];
      const before = this.pointers.get(e.pointerId);
      if (this.pointers.size === 2) {  // pinch: zoom about the middle of the two fingers
        const other = [...this.pointers.entries()].find(([id]) => id !== e.pointerId)[1];
        const d0 = Math.hypot(before[0] - other[0], before[1] - other[1]);
        const d1 = Math.hypot(now[0] - other[0], now[1] - other[1]);
        if (d0 > 0) this.zoomBy(d1 / d0, (now[0] + other[0]) / 2, (now[1] + other[1]) / 2);
      } else if (this.drawing) {
        this.drawing.end = this.toSlide(...now);
        this.redraw();
      } else {
        this.panBy(now[0] - before[0], now[1] - before[1]);
      }
      this.pointers.set(e.pointerId, now);
    });
    const up = (e) => {
      this.pointers.delete(e.pointerId);
      if (this.drawing) {
        const region = this.squareRegion(this.drawing);
        this.drawing = null;
        this.redraw();
        if (region) this.onRegion(region);
      }
    };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
  }

  // A drag gives the square from its start point (side: the longer of the two extents); a click
  // the square of 224 screen pixels around it (what is on screen there). Clamped to the picture.
  squareRegion({ start, end }) {
    if (!this.source) return null;
    let side, x, y;
    const dragged = end && Math.max(Math.abs(end[0] - start[0]), Math.abs(end[1] - start[1])) * this.view.scale >= 6;
    if (dragged) {
      side = Math.max(Math.abs(end[0] - start[0]), Math.abs(end[1] - start[1]));
      x = end[0] < start[0] ? start[0] - side : start[0];
      y = end[1] < start[1] ? start[1] - side : start[1];
    } else {
      side = 224 / this.view.scale;
      x = start[0] - side / 2;
      y = start[1] - side / 2;
    }
    side = Math.max(1, Math.min(Math.round(side), this.source.width, this.source.height));
    x = Math.round(Math.min(Math.max(x, 0), this.source.width - side));
    y = Math.round(Math.min(Math.max(y, 0), this.source.height - side));
    return { x, y, w: side, h: side };
  }

  // ---- drawing -----------------------------------------------------------------------------
  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const ctx = this.ctx;
    ctx.fillStyle = "#f4f3f7";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.source) return;
    ctx.imageSmoothingQuality = "high";
    if (this.source.kind === "image") {
      const [x, y] = this.toScreen(0, 0);
      ctx.drawImage(this.source.bitmap, x, y, this.source.width * this.view.scale, this.source.height * this.view.scale);
      this.tilesDrawn = 1;
    } else {
      this.drawTiles();
    }
    for (const overlay of this.overlays) if (overlay.visible) this.drawOverlay(overlay);
    this.regions.forEach((region, i) => this.drawRegion(region, i + 1));
    if (this.drawing && this.drawing.end) this.drawRegion(this.squareRegion(this.drawing), "");
  }

  drawTiles() {
    const s = this.source;
    // the finest level needed: level pixels no larger than screen pixels
    const wanted = Math.min(s.maxLevel, Math.max(0, Math.ceil(s.maxLevel - Math.log2(1 / this.view.scale))));
    let drawn = 0;
    for (let level = Math.max(0, wanted - 3); level <= wanted; level++) {  // coarse ones first, under
      drawn += this.drawLevel(level, level === wanted || level === Math.max(0, wanted - 3));
    }
    this.tilesDrawn = drawn;
    this.level = wanted;
  }

  drawLevel(level, load) {
    const s = this.source;
    const down = 2 ** (s.maxLevel - level);  // level-0 pixels per pixel of this level
    const lw = Math.ceil(s.width / down), lh = Math.ceil(s.height / down);
    const [x0, y0] = this.toSlide(0, 0), [x1, y1] = this.toSlide(this.canvas.width, this.canvas.height);
    const c0 = Math.max(0, Math.floor(x0 / down / s.tileSize)), c1 = Math.min(Math.ceil(lw / s.tileSize) - 1, Math.floor(x1 / down / s.tileSize));
    const r0 = Math.max(0, Math.floor(y0 / down / s.tileSize)), r1 = Math.min(Math.ceil(lh / s.tileSize) - 1, Math.floor(y1 / down / s.tileSize));
    let drawn = 0;
    for (let row = r0; row <= r1; row++) {
      for (let col = c0; col <= c1; col++) {
        const key = `${level}/${col}/${row}`;
        const tile = this.tiles.get(key);
        if (tile && tile.bitmap) {
          const left = col * s.tileSize - (col ? s.overlap : 0), top = row * s.tileSize - (row ? s.overlap : 0);
          const [sx, sy] = this.toScreen(left * down, top * down);
          this.ctx.drawImage(tile.bitmap, sx, sy, tile.bitmap.width * down * this.view.scale, tile.bitmap.height * down * this.view.scale);
          drawn++;
        } else if (!tile && load && this.fetchTile) {
          this.tiles.set(key, { loading: true });
          this.fetchTile(s.tileUrl(level, col, row)).then((bitmap) => {
            this.tiles.set(key, { bitmap });
            this.redraw();
          }, () => this.tiles.set(key, { failed: true }));
        }
      }
    }
    return drawn;
  }

  drawOverlay(overlay) {
    const ctx = this.ctx;
    ctx.save();
    ctx.globalAlpha = overlay.opacity;
    for (const f of overlay.features) {
      const [sx, sy] = this.toScreen(f.x0, f.y0);
      const w = (f.x1 - f.x0) * this.view.scale, h = (f.y1 - f.y0) * this.view.scale;
      if (sx > this.canvas.width || sy > this.canvas.height || sx + w < 0 || sy + h < 0) continue;
      ctx.fillStyle = f.color;
      ctx.fillRect(sx, sy, w, h);
    }
    ctx.restore();
  }

  drawRegion(region, label) {
    if (!region) return;
    const ctx = this.ctx;
    const [sx, sy] = this.toScreen(region.x, region.y);
    const w = region.w * this.view.scale, h = region.h * this.view.scale;
    ctx.save();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#7a2e6e";
    ctx.setLineDash(label === "" ? [6, 4] : []);
    ctx.strokeRect(sx, sy, w, h);
    if (label !== "") {
      const text = region.answer ? `${label}: ${region.answer}` : String(label);
      ctx.font = "13px system-ui, sans-serif";
      const width = Math.min(ctx.measureText(text).width + 10, 320);
      ctx.fillStyle = "rgba(122, 46, 110, 0.92)";
      ctx.fillRect(sx + w + 4, sy, width, 20);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, sx + w + 9, sy + 14, 310);
    }
    ctx.restore();
  }
}

// GeoJSON tiles (lavis.slides' regions.geojson) as rectangles with a colour: closed questions by
// P(yes) from blue (no) to red (yes), retrieval by its score across the slide's range, open
// answers by their class colour.
function overlayFeatures(collection, mode) {
  const features = [];
  const scores = collection.features.map((f) => f.properties.score).filter((v) => typeof v === "number");
  const low = Math.min(...scores), high = Math.max(...scores);
  for (const f of collection.features) {
    const ring = f.geometry.coordinates[0];
    const xs = ring.map((p) => p[0]), ys = ring.map((p) => p[1]);
    const p = f.properties;
    let rgb = [150, 150, 150];
    if (mode === "open" && p.classification) rgb = p.classification.color;
    else if (typeof p.score === "number") {
      const t = mode === "closed" ? p.score : (high > low ? (p.score - low) / (high - low) : 0.5);
      rgb = NO_RGB.map((v, i) => Math.round(v + (YES_RGB[i] - v) * t));
    }
    features.push({ x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys),
                    color: `rgb(${rgb.join(",")})` });
  }
  return features;
}
