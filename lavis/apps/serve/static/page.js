"use strict";
// The chat page: pick an image, an example tile or a slide region, ask; answers stream in as the
// model decides them. It calls the same /v1 API as any client.

const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, imageName: "", slide: null, region: null, messages: [], busy: false,
                controller: null, maxImageMb: 20, fieldSize: 224, slides: [] };

// What the page says for each error code: in the user's words, with what to do.
const ADVICE = {
  invalid_image: "This file could not be read as a picture. Choose a PNG, JPEG, TIFF, BMP or WebP image.",
  image_too_large: "This picture is too large for the server. Choose a smaller one, or a smaller region of the slide.",
  context_length_exceeded: "The question is too long for this model. Please ask a shorter question.",
  missing_image: "Choose an image, an example or a region of a slide first.",
  server_busy: "The server is busy right now. Please try again in a moment.",
  generation_failed: "Something went wrong while answering. Please ask again; if it keeps happening, the server log says why.",
  invalid_api_key: "This server needs an API key: enter it under Settings.",
  slide_not_found: "That slide is no longer in the slide folder. Choose another one.",
  no_slides: "This server shows no slides.",
  unsupported_media_type: "The page and the server disagree (the page may be outdated): reload the page.",
};

class PageError extends Error {
  constructor(status, code, detail) {
    super(ADVICE[code] || (status >= 500 ? "Something went wrong on the server. Please try again." :
                           `The server could not answer: ${detail}`));
    this.detail = detail;
  }
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim() || sessionStorage.getItem("clover_key") || "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function fail(response) {
  const body = await response.json().catch(() => ({}));
  const error = body.error || {};
  if (response.status === 401) { $("settings").open = true; $("api_key").focus(); }
  return new PageError(response.status, error.code, error.message || response.statusText);
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: headers() });
  } catch (err) {
    throw new PageError(0, null, "Cannot reach the server: is it still running?");
  }
  if (!response.ok) throw await fail(response);
  return response;
}

async function fetchBitmap(url) {
  const response = await api(url);
  return createImageBitmap(await response.blob());
}

const viewer = new Viewer($("viewer"), { onRegion: chooseRegion, fetchTile: fetchBitmap });
window.viewer = viewer;  // for the browser tests and the curious

async function connect() {
  try {
    const models = await (await api("/v1/models")).json();
    state.model = models.data[0].id;
    $("model").textContent = "model " + state.model;
    showContract(models.data[0].conversation || {});
    const examples = await (await api("/examples")).json();
    applyDefaults(examples.defaults);
    showExamples(examples.data);
    state.slides = (await (await api("/v1/slides")).json()).data;
    showSlides(state.slides);
    $("status").textContent = "ready";
  } catch (err) {
    $("model").textContent = "not connected";
    $("status").textContent = err.message;
  }
}

// A model tuned on single questions answers each question on its own: say so before the user relies
// on an earlier turn (the server does not show it earlier turns).
function showContract(contract) {
  const single = contract.mode !== "multi_turn";
  $("turn-notice").hidden = !single;
  $("turn-notice").textContent = single
    ? "This model answers each question on its own about the image: it does not see your earlier questions " +
      "or its answers, so ask each question in full."
    : "";
}

function applyDefaults(d) {
  $("max_tokens").value = d.max_tokens;
  $("max_tokens").max = d.max_tokens_limit;
  state.maxImageMb = d.max_image_mb;
  state.fieldSize = d.field_size || 224;
  $("settings-hint").textContent = `temperature 0: the same answer every time (${d.num_beams} beams); ` +
    `above 0: varied answers. Images up to ${d.max_image_mb} MB.`;
}

// ---- images --------------------------------------------------------------------------------
function showExamples(items) {
  const box = $("examples");
  box.innerHTML = "";
  for (const item of items) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.title = item.name + (item.question ? "\n" + item.question : "");
    const img = document.createElement("img");
    img.alt = item.name;
    button.appendChild(img);
    api(item.url).then((r) => r.blob()).then((blob) => {
      img.src = URL.createObjectURL(blob);
      button.onclick = () => {
        for (const b of box.children) b.classList.remove("chosen");
        button.classList.add("chosen");
        if (item.question) $("question").value = item.question;
        readImage(blob, item.name);
        $("question").focus();
      };
    });
    box.appendChild(button);
  }
  $("examples-box").hidden = items.length === 0;
}

// The kind of picture a file is, from its first bytes (its name can lie).
async function pictureKind(blob) {
  const b = new Uint8Array(await blob.slice(0, 12).arrayBuffer());
  const starts = (...bytes) => bytes.every((v, i) => b[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "PNG";
  if (starts(0xff, 0xd8, 0xff)) return "JPEG";
  if (starts(0x47, 0x49, 0x46, 0x38)) return "GIF";
  if (starts(0x42, 0x4d)) return "BMP";
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return "TIFF";
  if (starts(0x52, 0x49, 0x46, 0x46) && String.fromCharCode(...b.slice(8, 12)) === "WEBP") return "WebP";
  return null;
}

async function readImage(blob, name) {
  $("ask-hint").textContent = "";
  if (blob.size > state.maxImageMb * 1024 * 1024) {
    $("ask-hint").textContent = `${name} is ${(blob.size / 1048576).toFixed(1)} MB; this server takes pictures up to ` +
      `${state.maxImageMb} MB. Choose a smaller one.`;
    return;
  }
  const kind = await pictureKind(blob);
  let bitmap = null;
  if (kind && kind !== "TIFF") bitmap = await createImageBitmap(blob).catch(() => null);
  if (!kind || (kind !== "TIFF" && !bitmap)) {
    $("ask-hint").textContent = `${name} is not a picture this page can use. Choose a PNG, JPEG, TIFF, BMP or WebP image.`;
    return;
  }
  state.image = await new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);  // a data: URL, the form the API takes
    reader.readAsDataURL(blob);
  });
  state.imageName = name;
  state.slide = state.region = null;
  $("image-name").textContent = kind === "TIFF" ? `${name} (TIFF: the browser shows no preview; the server reads it)` : name;
  let preview = $("preview");
  if (!preview) {
    preview = Object.assign(document.createElement("img"), { id: "preview", hidden: true });
    $("image-pane").appendChild(preview);
  }
  preview.src = state.image;
  preview.alt = name;
  showViewer(true);
  if (bitmap) viewer.setImage(bitmap); else viewer.source = null;
  resetConversation();
}

function showViewer(image) {
  $("viewer-box").hidden = false;
  $("drop").hidden = image;
  $("other-image").hidden = !image;
  $("draw-region").hidden = image;
  $("viewer-hint").textContent = image ? "Drag to move, scroll or pinch to zoom."
    : "Drag to move, scroll or pinch to zoom. \"Ask about a region\", then drag a square (or click) on the slide.";
  viewer.resize();
}

// ---- slides --------------------------------------------------------------------------------
function showSlides(slides) {
  $("tab-slides").hidden = slides.length === 0;
  $("slide-select").innerHTML = "";
  for (const slide of slides) {
    const option = document.createElement("option");
    option.value = slide.id;
    const size = `${slide.width} x ${slide.height}` + (slide.mpp ? `, ${slide.mpp.toFixed(2)} um/px` : "");
    option.textContent = `${slide.name} (${size})`;
    $("slide-select").appendChild(option);
  }
}

function openTab(slides) {
  $("tab-image").classList.toggle("active", !slides);
  $("tab-slides").classList.toggle("active", slides);
  $("image-pane").hidden = slides;
  $("slide-pane").hidden = !slides;
  $("examples-box").hidden = slides || $("examples").children.length === 0;
  if (slides) openSlide($("slide-select").value);
  else if (state.image) { showViewer(true); const p = $("preview"); if (p) createImageBitmap(p).then((b) => viewer.setImage(b), () => {}); }
  else { $("viewer-box").hidden = true; $("drop").hidden = false; }
}

async function openSlide(id) {
  const slide = state.slides.find((s) => s.id === id);
  if (!slide) return;
  state.slide = slide;
  state.region = null;
  showViewer(false);
  const dzi = new DOMParser().parseFromString(await (await api(slide.dzi)).text(), "application/xml").documentElement;
  const size = dzi.getElementsByTagName("Size")[0];
  const base = slide.dzi.replace(/\.dzi$/, "_files");
  viewer.setDeepZoom(+size.getAttribute("Width"), +size.getAttribute("Height"), +dzi.getAttribute("TileSize"),
                     +dzi.getAttribute("Overlap"), (level, col, row) => `${base}/${level}/${col}_${row}.jpeg`);
  showOverlays(slide);
  resetConversation();
}

function showOverlays(slide) {
  const box = $("overlays");
  box.innerHTML = "";
  slide.overlays.forEach((item) => {
    const row = document.createElement("label");
    row.className = "overlay";
    row.innerHTML = `<input type="checkbox" class="overlay-toggle"><span></span>` +
      `<input type="range" class="overlay-opacity" min="0" max="1" step="0.05" value="0.5" aria-label="opacity">`;
    row.querySelector("span").textContent = `${item.question} (${item.mode}, ${item.tiles} tiles)`;
    const [toggle, opacity] = row.querySelectorAll("input");
    const layer = { name: item.question, features: [], visible: false, opacity: 0.5 };
    viewer.overlays.push(layer);
    toggle.onchange = async () => {
      if (toggle.checked && !layer.features.length) {
        layer.features = overlayFeatures(await (await api(item.url)).json(), item.mode);
      }
      layer.visible = toggle.checked;
      viewer.redraw();
    };
    opacity.oninput = () => { layer.opacity = +opacity.value; viewer.redraw(); };
    box.appendChild(row);
  });
  if (slide.overlays.some((o) => o.mode === "closed")) {
    box.insertAdjacentHTML("beforeend", '<div class="hint">P(yes): <span class="legend" style="display:inline-block;' +
      'width:120px;vertical-align:middle"></span> blue no, red yes</div>');
  }
}

function chooseRegion(region) {
  viewer.regions.push(region);
  state.region = region;
  viewer.drawMode = false;
  $("draw-region").setAttribute("aria-pressed", "false");
  $("viewer").classList.remove("drawing");
  viewer.redraw();
  resetConversation(`Region ${viewer.regions.length}: ask a question about it.`);
  $("question").focus();
}

function regionUrl(slide, r) {
  return `slide://${encodeURI(slide.id)}?x=${r.x}&y=${r.y}&w=${r.w}&h=${r.h}`;
}

// ---- the conversation ----------------------------------------------------------------------
function resetConversation(text) {
  state.messages = [];
  $("transcript").innerHTML = "";
  const ready = state.image || state.region;
  $("transcript").appendChild(Object.assign(document.createElement("div"), {
    className: "empty", textContent: text || (ready ? "Ask a question about this image." :
      state.slide ? "Choose \"Ask about a region\" and mark a region of the slide." : "Choose an image first.") }));
}

function bubble(cls, text) {
  const empty = $("transcript").querySelector(".empty");
  if (empty) empty.remove();
  const div = document.createElement("div");
  div.className = "turn " + cls;
  if (text !== undefined) div.textContent = text;
  $("transcript").appendChild(div);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return div;
}

function showError(err) {
  const div = bubble("answer error", err.message);
  if (err.detail && err.detail !== err.message) div.title = err.detail;
}

function settings() {
  const out = { max_tokens: parseInt($("max_tokens").value, 10) || undefined,
                temperature: parseFloat($("temperature").value) || 0,
                top_p: parseFloat($("top_p").value) || 1 };
  const seed = $("seed").value.trim();
  if (seed !== "") out.seed = parseInt(seed, 10);
  return out;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (state.busy) return;
  if (!question) { $("ask-hint").textContent = "Type a question first, e.g. Is the tissue dense?"; $("question").focus(); return; }
  const image = state.region && state.slide ? regionUrl(state.slide, state.region) : state.image;
  if (!image) { $("ask-hint").textContent = ADVICE.missing_image; return; }
  $("ask-hint").textContent = "";
  const content = [{ type: "text", text: question }];
  if (state.messages.length === 0) content.push({ type: "image_url", image_url: { url: image } });
  const messages = [...state.messages, { role: "user", content }];
  bubble("question", question);
  $("question").value = "";
  await answer(messages, state.region);
}

// Streams the answer into a new bubble: text as it is decided, then the confidence and the meta line.
async function answer(messages, region) {
  state.busy = true;
  state.controller = new AbortController();
  $("ask").hidden = true; $("stop").hidden = false; $("status").textContent = "answering...";
  const div = bubble("answer pending");
  const text = Object.assign(document.createElement("div"), { className: "text" });
  div.appendChild(text);
  const started = performance.now();
  let content = "", finish = null, yesNo = null, usage = null, stopped = false;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), signal: state.controller.signal,
      body: JSON.stringify({ model: state.model, messages, stream: true, stream_options: { include_usage: true }, ...settings() }) });
    if (!response.ok) throw await fail(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new PageError(500, chunk.error.code, chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const choice = (chunk.choices || [])[0];
        if (!choice) continue;
        if (choice.delta && choice.delta.content) {  // shown as it comes; data-pieces counts the pieces
          content += choice.delta.content;
          text.innerHTML = renderMarkdown(content);
          div.dataset.pieces = String(+(div.dataset.pieces || 0) + 1);
        }
        if (choice.finish_reason) { finish = choice.finish_reason; yesNo = choice.yes_no || null; }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") stopped = true;
    else {
      div.remove();
      showError(err instanceof PageError ? err : new PageError(0, null, "Cannot reach the server: is it still running?"));
    }
  }
  state.busy = false;
  $("ask").hidden = false; $("stop").hidden = true; $("status").textContent = "ready";
  if (!div.isConnected) return;
  div.classList.remove("pending");
  text.innerHTML = renderMarkdown(content || (stopped ? "" : "(empty answer)"));
  if (yesNo) div.appendChild(confidence(yesNo));
  div.appendChild(meta(div, content, started, usage, finish, stopped, messages));
  if (!stopped) state.messages = [...messages, { role: "assistant", content }];
  if (region) { region.answer = content.length > 40 ? content.slice(0, 38) + "..." : content; viewer.redraw(); }
  $("question").focus();
}

function meta(div, content, started, usage, finish, stopped, messages) {
  const line = document.createElement("div");
  line.className = "meta";
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  line.append(`${seconds} s` + (usage ? `, ${usage.completion_tokens} tokens` : "") +
              (finish === "length" ? ", cut at max tokens" : "") + (stopped ? ", stopped" : ""));
  const copy = Object.assign(document.createElement("button"), { type: "button", className: "copy", textContent: "copy" });
  copy.onclick = async () => {
    await navigator.clipboard.writeText(content).then(() => { copy.textContent = "copied"; },
                                                       () => { copy.textContent = "copy failed"; });
  };
  const again = Object.assign(document.createElement("button"), { type: "button", className: "regenerate", textContent: "regenerate" });
  again.onclick = () => {  // ask the same question again in place of this answer
    if (state.busy || div !== $("transcript").lastElementChild) return;
    div.remove();
    state.messages = messages.slice(0, -1);
    answer(messages, state.region);
  };
  line.append(copy, again);
  return line;
}

function confidence(yesNo) {
  const box = document.createElement("div");
  box.className = "confidence";
  const yes = Math.round(yesNo.yes * 100);
  box.textContent = `model confidence: yes ${yes}% / no ${100 - yes}%`;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.innerHTML = `<span class="y" style="width:${yes}%"></span><span class="n" style="width:${100 - yes}%"></span>`;
  box.appendChild(bar);
  return box;
}

// ---- wiring --------------------------------------------------------------------------------
$("drop").onclick = () => $("file").click();
$("other-image").onclick = () => $("file").click();
$("drop").onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); };
$("file").onchange = () => { const f = $("file").files[0]; if (f) readImage(f, f.name); $("file").value = ""; };
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => {
  e.preventDefault(); $("drop").classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) readImage(f, f.name);
};
$("tab-image").onclick = () => openTab(false);
$("tab-slides").onclick = () => openTab(true);
$("slide-select").onchange = () => openSlide($("slide-select").value);
$("zoom-in").onclick = () => viewer.zoomBy(1.6);
$("zoom-out").onclick = () => viewer.zoomBy(1 / 1.6);
$("zoom-fit").onclick = () => viewer.fit();
$("draw-region").onclick = () => {
  viewer.drawMode = !viewer.drawMode;
  $("draw-region").setAttribute("aria-pressed", String(viewer.drawMode));
  $("viewer").classList.toggle("drawing", viewer.drawMode);
};
$("question").oninput = () => { $("ask-hint").textContent = ""; };
$("ask-form").onsubmit = ask;
$("stop").onclick = () => { if (state.controller) state.controller.abort(); };
$("reset").onclick = () => resetConversation();
$("api_key").onchange = () => { sessionStorage.setItem("clover_key", $("api_key").value.trim()); connect(); };
connect();
