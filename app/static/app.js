/* Atelier demo page: plain JavaScript over the public HTTP API (the same calls a client program makes).
 *
 *   GET  /v1/styles                 the style gallery (preview_url of each style)
 *   POST /v1/stylize                multipart: image (+ style_image), style, strength, preserve_color, max_side, format
 *   POST /v1/detect                 multipart: image, min_face_size, thresholds, scale_factor, max_faces
 *   POST /v1/verify                 multipart: image_a, image_b, face, threshold
 *
 * Errors answer {"error": {"code", "message", "request_id"}}; explain() turns each code into plain words, and the
 * request id is shown so that a user can quote it.
 */
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KEY_STORAGE = "atelier-api-key";
  const FACE_COLOURS = ["#ff9f1c", "#2ec4b6", "#e71d36", "#8f5cff", "#3bb273", "#f15bb5", "#00bbf9", "#fee440"];

  // ------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, code, message, requestId = "") {
      super(message);
      this.status = status;
      this.code = code;
      this.requestId = requestId;
    }
  }

  const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

  async function api(path, { method = "GET", body = undefined, signal = undefined } = {}) {
    const headers = {};
    if (apiKey()) headers["X-API-Key"] = apiKey();
    let response;
    try {
      response = await fetch(path, { method, body, headers, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "NETWORK", err.message || String(err));
    }
    if (!response.ok) {
      let code = `HTTP_${response.status}`;
      let message = response.statusText || "";
      let requestId = response.headers.get("X-Request-ID") || "";
      try {
        const data = await response.json();
        if (data && data.error) ({ code, message } = data.error);
        if (data && data.error && data.error.request_id) requestId = data.error.request_id;
      } catch (_) { /* not a JSON error body (a proxy's HTML page, say) */ }
      throw new ApiError(response.status, code, message, requestId);
    }
    return response;
  }

  // What went wrong and what to do, per error code of the README's table.
  const PLAIN = {
    INVALID_IMAGE: ["That file is not an image Atelier can read.",
      "Choose a photo saved as JPEG, PNG, WebP, BMP, TIFF or GIF, and check that it opens in an image viewer."],
    PAYLOAD_TOO_LARGE: ["The file is too large to upload.", "Choose a smaller file, or save the photo at a lower quality first."],
    IMAGE_TOO_LARGE: ["The image has too many pixels.", "Resize it (a few megapixels is plenty) and try again."],
    MISSING_FIELD: ["A photo is missing.", "Choose a photo in every box, then try again."],
    INVALID_PARAMETER: ["One of the settings is not accepted.", "Check the values in the form (or reset them to the defaults) and try again."],
    NO_FACE: ["No face was found.", "Use a photo where a face is clearly visible, or lower the detection thresholds."],
    UNKNOWN_STYLE: ["That style is not available on this server.", "Pick another style from the gallery."],
    NOT_FOUND: ["This server does not offer that feature.", "It may be an older or trimmed-down deployment; the other tabs may still work."],
    UNAUTHORIZED: ["This server needs an API key.", "Enter your key under “API key” at the top of the page, then try again."],
    UNSUPPORTED_MEDIA_TYPE: ["The request was sent in a form the server does not accept.", "Reload the page and try again."],
    OVERLOADED: ["The server is busy right now.", "Wait a few seconds and try again."],
    TIMEOUT: ["The server took too long and gave up.", "Try a smaller photo, or a smaller processing size."],
    NOT_READY: ["This part of the service is not available right now.",
      "The server is starting, or the models for this task are not installed. Try again in a moment."],
    INTERNAL: ["Something went wrong inside the server.", "Try again; if it keeps happening, the server's log has the details."],
    NETWORK: ["Could not reach the Atelier server.", "Check that the server is running and that you are online, then reload the page."],
  };

  const WHICH_PHOTO = { image_a: "the first photo", image_b: "the second photo", style_image: "the style image" };

  function explain(err) {
    if (err.plain) return err.plain;
    let [title, advice] = PLAIN[err.code] || [`The request failed (HTTP ${err.status}).`, "Try again; the details are below."];
    const field = /\b(image_a|image_b|style_image)\b/.exec(err.message || "");
    if (field && err.code === "NO_FACE") title = `No face was found in ${WHICH_PHOTO[field[1]]}.`;
    else if (field && err.code === "INVALID_IMAGE") title = `${WHICH_PHOTO[field[1]][0].toUpperCase()}${WHICH_PHOTO[field[1]].slice(1)} is not an image Atelier can read.`;
    return { title, advice };
  }

  const clientError = (title, advice) => Object.assign(new Error(title), { plain: { title, advice } });

  // ------------------------------------------------------------------ small helpers

  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };
  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  };
  const round = (value, digits = 0) => Number(value).toFixed(digits);
  const formatBytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${round(n / 1024)} KB` : `${round(n / 1048576, 1)} MB`);
  const formatMs = (ms) => (ms >= 1000 ? `${round(ms / 1000, 2)} s` : `${round(ms)} ms`);
  const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, "'\\''")}'`);

  function curlCommand(path, fields, output) {
    const lines = [`curl -X POST ${shellQuote(location.origin + path)}`];
    if (apiKey()) lines.push(`-H "X-API-Key: $ATELIER_API_KEY"`);
    for (const [name, value] of fields) {
      lines.push(value instanceof File ? `-F ${shellQuote(`${name}=@${value.name}`)}` : `-F ${shellQuote(`${name}=${value}`)}`);
    }
    if (output) lines.push(`-o ${shellQuote(output)}`);
    return lines.join(" \\\n     ");
  }

  function loaded(img, src) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve(img);
      img.onerror = () => reject(clientError("The browser could not display the image.",
        "The server answered, but this browser cannot show the picture; try another photo."));
      img.src = src;
    });
  }

  // ------------------------------------------------------------------ panels: status, errors, busy state

  class Panel {
    constructor(section) {
      this.section = section;
      this.submit = $("button[type=submit]", section);
      this.status = $(".status", section);
      this.error = $(".error", section);
      this.results = $(".results", section);
      this.placeholder = $("[data-placeholder]", section);
      this.result = $(".result", section);
      this.running = false;
      this.timer = null;
      this.sent = []; // the file inputs of the request in flight
    }

    start(text) {
      this.running = true;
      this.clearError();
      this.submit.setAttribute("aria-disabled", "true");
      this.results.setAttribute("aria-busy", "true");
      this.status.classList.add("busy");
      const started = performance.now();
      const clock = el("span", { className: "elapsed", ariaHidden: "true" });
      clock.setAttribute("aria-hidden", "true");
      this.status.replaceChildren(el("span", { textContent: text }), clock);
      this.timer = setInterval(() => { clock.textContent = `${round((performance.now() - started) / 1000, 1)} s`; }, 100);
    }

    finish(text = "") {
      this.running = false;
      clearInterval(this.timer);
      this.submit.removeAttribute("aria-disabled");
      this.results.removeAttribute("aria-busy");
      this.status.classList.remove("busy");
      this.status.textContent = text;
    }

    showResult() {
      this.placeholder.hidden = true;
      this.result.hidden = false;
      // One column (phones): the result is below the form, so bring it into view.
      if (matchMedia("(max-width: 880px)").matches && this.results.getBoundingClientRect().top > innerHeight * 0.6) {
        const smooth = !matchMedia("(prefers-reduced-motion: reduce)").matches;
        this.results.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
      }
    }

    clearError() {
      this.error.hidden = true;
      this.error.replaceChildren();
    }

    fail(err) {
      this.finish("");
      let { title, advice } = explain(err);
      if (err.code === "INVALID_IMAGE" && this.sent.length > 1) {
        // The server does not say which upload it could not read; the browser could not preview that one either.
        const unreadable = this.sent.filter((input) => input.dataset.previewFailed === "true");
        if (unreadable.length === 1) title = `${unreadable[0].dataset.what} is not an image Atelier can read.`;
      }
      this.error.hidden = false;
      const parts = [el("p", { className: "error-title", textContent: title }), el("p", { textContent: advice })];
      if (err instanceof ApiError) {
        const where = err.status ? `HTTP ${err.status} ${err.code}` : "network error";
        parts.push(el("p", { className: "error-detail", textContent: `Server said (${where}): ${err.message}` }));
        if (err.requestId) {
          parts.push(el("p", { className: "error-request-id", textContent: `Request ID (quote it when reporting this): ${err.requestId}` }));
        }
      }
      this.error.replaceChildren(...parts);
    }

    // Runs one request at a time; any error (API, network, client-side check) is shown in plain words.
    async run(text, job) {
      if (this.running) return;
      this.start(text);
      try {
        const doneText = await job();
        this.finish(doneText || "");
      } catch (err) {
        console.error(err);
        this.fail(err);
      }
    }
  }

  // ------------------------------------------------------------------ file drop zones

  const fileUrls = new Map(); // input -> object URL of the chosen file

  function setupDrop(drop) {
    const input = $("input[type=file]", drop);
    const preview = $(".drop-preview", drop);
    const name = $(".drop-name", drop);

    input.addEventListener("change", () => {
      const file = input.files[0];
      if (fileUrls.has(input)) URL.revokeObjectURL(fileUrls.get(input));
      fileUrls.delete(input);
      drop.classList.toggle("has-file", Boolean(file));
      if (!file) {
        preview.hidden = true;
        name.textContent = "";
        return;
      }
      const url = URL.createObjectURL(file);
      fileUrls.set(input, url);
      name.textContent = `${file.name} · ${formatBytes(file.size)}`;
      input.dataset.previewFailed = "false";
      preview.onload = () => { preview.hidden = false; };
      preview.onerror = () => {
        input.dataset.previewFailed = "true";
        preview.hidden = true;
        name.textContent = `${file.name} · ${formatBytes(file.size)} — no preview: this may not be an image`;
      };
      preview.src = url;
    });

    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("dragging"); });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("dragging");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (!file) return;
      const transfer = new DataTransfer();
      transfer.items.add(file);
      input.files = transfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
  }

  function chosenFile(input, what) {
    const file = input.files[0];
    if (!file) throw clientError(`Choose ${what} first.`, "Click the box (or press Enter on it) to pick a file, or drop a file onto it.");
    return file;
  }

  // ------------------------------------------------------------------ tabs (WAI-ARIA tabs pattern)

  function setupTabs() {
    const tabs = $$("[role=tab]");
    const select = (tab, focus) => {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute("aria-selected", String(on));
        t.tabIndex = on ? 0 : -1;
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      }
      if (focus) tab.focus();
      const name = tab.id.replace("tab-", "");
      if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (event) => {
        const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
        if (!(event.key in moves)) return;
        event.preventDefault();
        select(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
      });
    });
    const fromHash = () => {
      const tab = document.getElementById(`tab-${location.hash.slice(1)}`);
      if (tab && tab.getAttribute("role") === "tab") select(tab, false);
    };
    window.addEventListener("hashchange", fromHash);
    fromHash();
  }

  // ------------------------------------------------------------------ Stylize

  const STYLE_GROUPS = [
    ["arbitrary", "Any style", "the style of a second image of yours (Ghiasi et al. 2017)"],
    ["multi-style", "Network styles", "26 painting styles learnt by one network (Dumoulin et al. 2017)"],
    ["trained", "Trained styles", "one network per style (Johnson et al. 2016)"],
    ["filter", "Filters", "OpenCV's non-photorealistic rendering"],
  ];

  function setupStylize() {
    const section = $("#panel-stylize");
    const panel = new Panel(section);
    const form = $("#stylize-form");
    const gallery = $("#style-gallery");
    const note = $("#styles-note");
    const styleImageBox = $("#style-image-box");
    const strength = $("#stylize-strength");
    const strengthOut = $("#stylize-strength-out");
    const compare = $("#stylize-compare");
    const compareRange = $("#stylize-compare-range");
    let styles = [];
    let previewUrls = [];
    let resultUrl = null;

    strength.addEventListener("input", () => { strengthOut.textContent = `${Math.round(strength.value * 100)}%`; });
    compareRange.addEventListener("input", () => compare.style.setProperty("--pos", `${compareRange.value}%`));
    const sideBySide = $("#stylize-side");
    sideBySide.addEventListener("click", () => {
      const on = sideBySide.getAttribute("aria-pressed") !== "true";
      sideBySide.setAttribute("aria-pressed", String(on));
      compare.classList.toggle("side", on);
      compareRange.disabled = on;
    });

    const selectedStyle = () => {
      const radio = $("input[name=style]:checked", gallery);
      return radio ? styles.find((s) => s.id === radio.value) : undefined;
    };

    const syncStyleImage = () => {
      const style = selectedStyle();
      styleImageBox.hidden = !(style && style.kind === "arbitrary");
    };
    gallery.addEventListener("change", syncStyleImage);

    async function previewSource(style, img) {
      if (!style.preview_url) return;
      if (!apiKey()) {
        img.loading = "lazy";
        img.src = style.preview_url;
        return;
      }
      // <img src> cannot send the API key: fetch the preview and show it from a blob.
      try {
        const blob = await (await api(style.preview_url)).blob();
        const url = URL.createObjectURL(blob);
        previewUrls.push(url);
        img.src = url;
      } catch (err) {
        console.warn("preview of", style.id, err);
      }
    }

    function styleCard(style, checked) {
      const radio = el("input", { type: "radio", name: "style", value: style.id, checked });
      let thumb;
      if (style.kind === "arbitrary") {
        thumb = el("span", { className: "style-thumb any" });
        const icon = svg("svg", { "aria-hidden": "true", focusable: "false" });
        icon.append(svg("use", { href: "/static/icons.svg#plus" }));
        thumb.append(icon);
      } else {
        thumb = el("img", { className: "style-thumb", alt: "", width: 128, height: 128, decoding: "async" });
        previewSource(style, thumb);
      }
      const label = el("label", { className: "style-card", title: `${style.name} — ${style.source}` },
        radio, thumb, el("span", { className: "style-name", textContent: style.kind === "arbitrary" ? "Your style image" : style.name }));
      label.dataset.styleId = style.id;
      label.dataset.kind = style.kind;
      return label;
    }

    async function loadStyles() {
      previewUrls.forEach((url) => URL.revokeObjectURL(url));
      previewUrls = [];
      note.classList.remove("note-warning");
      note.textContent = "Loading the styles…";
      gallery.replaceChildren();
      try {
        styles = (await (await api("/v1/styles")).json()).styles;
      } catch (err) {
        const { title, advice } = explain(err);
        note.textContent = `The styles could not be loaded. ${title} ${advice}`;
        note.classList.add("note-warning");
        return;
      }
      if (!styles.length) {
        note.textContent = "This server has no styles installed.";
        return;
      }
      const initial = (styles.find((s) => s.kind !== "arbitrary") || styles[0]).id;
      const known = new Set(STYLE_GROUPS.map(([kind]) => kind));
      const groups = [...STYLE_GROUPS, ["other", "Other styles", ""]];
      for (const [kind, title, about] of groups) {
        const members = styles.filter((s) => (kind === "other" ? !known.has(s.kind) : s.kind === kind));
        if (!members.length) continue;
        const grid = el("div", { className: "gallery-grid" });
        for (const style of members) grid.append(styleCard(style, style.id === initial));
        const heading = el("h3", { textContent: title, title: about });
        gallery.append(heading, grid);
      }
      note.textContent = `${styles.length} styles. Use the arrow keys to move between them.`;
      syncStyleImage();
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      panel.run("Painting your photo…", async () => {
        const photo = chosenFile($("#stylize-image"), "a photo");
        const style = selectedStyle();
        if (!style) throw clientError("Pick a style first.", "Choose one of the styles in the gallery.");
        const fields = [["image", photo]];
        panel.sent = [$("#stylize-image")];
        if (style.kind === "arbitrary") {
          fields.push(["style_image", chosenFile($("#stylize-style-image"), "a style image")]);
          panel.sent.push($("#stylize-style-image"));
        } else {
          fields.push(["style", style.id]);
        }
        const format = $("#stylize-format").value;
        fields.push(["strength", strength.value], ["preserve_color", String($("#stylize-preserve").checked)],
          ["max_side", $("#stylize-max-side").value], ["format", format]);
        const body = new FormData();
        for (const [name, value] of fields) body.append(name, value);

        const response = await api("/v1/stylize", { method: "POST", body });
        const blob = await response.blob();
        if (resultUrl) URL.revokeObjectURL(resultUrl);
        resultUrl = URL.createObjectURL(blob);
        const output = $("#stylize-output");
        await Promise.all([loaded(output, resultUrl), loaded($("#stylize-original"), fileUrls.get($("#stylize-image")))]);
        compare.style.setProperty("--ar", String(output.naturalWidth / output.naturalHeight));
        compareRange.value = 50;
        compare.style.setProperty("--pos", "50%");
        const timing = /inference;dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
        const ext = format === "jpeg" ? "jpg" : format;
        const stem = photo.name.replace(/\.[^.]*$/, "") || "photo";
        const download = $("#stylize-download");
        download.href = resultUrl;
        download.download = `${stem}-${style.kind === "arbitrary" ? "any-style" : style.id}.${ext}`;
        const styleName = style.kind === "arbitrary" ? "your style image" : `“${style.name}”`;
        $("#stylize-meta").textContent = `${output.naturalWidth} × ${output.naturalHeight} px, ${format.toUpperCase()}, ` +
          `${formatBytes(blob.size)} · ${styleName} at ${Math.round(strength.value * 100)}%` +
          (timing ? ` · ${formatMs(Number(timing[1]))} on the server` : "");
        output.alt = `Your photo painted in ${styleName}`;
        $("#stylize-curl").textContent = curlCommand("/v1/stylize", fields, `stylised.${ext}`);
        panel.showResult();
        return "Done. Drag the slider on the picture (or use the arrow keys) to compare.";
      });
    });

    return loadStyles;
  }

  // ------------------------------------------------------------------ faces on a photo (SVG in image pixels)

  // Boxes and landmarks are SVG in the image's pixel coordinates (viewBox = image size), so they scale with the
  // photo; the numbers are HTML tags placed in percent, so they keep a readable size at any scale.
  function drawFaces(overlay, width, height, faces, { dimOutside = false } = {}) {
    overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
    overlay.setAttribute("preserveAspectRatio", "none");
    overlay.replaceChildren();
    const frame = overlay.parentElement;
    frame.style.setProperty("--ar", String(width / height));
    $$(".face-tag", frame).forEach((tag) => tag.remove());
    if (dimOutside && faces.length) {
      const [x1, y1, x2, y2] = faces[0].box;
      overlay.append(svg("path", {
        class: "dim", "fill-rule": "evenodd",
        d: `M0 0H${width}V${height}H0Z M${x1} ${y1}V${y2}H${x2}V${y1}Z`,
      }));
    }
    faces.forEach((face, i) => {
      const colour = face.colour || FACE_COLOURS[i % FACE_COLOURS.length];
      const [x1, y1, x2, y2] = face.box;
      const group = svg("g", { "data-face": i });
      group.append(svg("rect", {
        class: "face-box", x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: colour,
      }));
      const radius = Math.max(Math.max(width, height) / 300, (x2 - x1) / 32);
      for (const [x, y] of Object.values(face.landmarks || {})) {
        group.append(svg("circle", { class: "landmark", cx: x, cy: y, r: radius, fill: colour }));
      }
      overlay.append(group);
      if (face.label !== null) {
        const tag = el("span", { className: "face-tag", textContent: face.label ?? String(i + 1) });
        tag.setAttribute("aria-hidden", "true");
        tag.style.background = colour;
        tag.style.left = `${(Math.max(0, x1) / width) * 100}%`;
        tag.style.top = `${(Math.max(0, y1) / height) * 100}%`;
        if (y1 / height < 0.06) tag.classList.add("inside");
        frame.append(tag);
      }
    });
  }

  // ------------------------------------------------------------------ Detect

  const DETECT_DEFAULTS = { "detect-min-face": "20", "detect-max-faces": "", "detect-scale": "0.709",
    "detect-t1": "0.6", "detect-t2": "0.7", "detect-t3": "0.7" };

  function setupDetect() {
    const panel = new Panel($("#panel-detect"));
    const form = $("#detect-form");

    $("#detect-reset").addEventListener("click", () => {
      for (const [id, value] of Object.entries(DETECT_DEFAULTS)) $(`#${id}`).value = value;
    });

    const number = (id, what) => {
      const input = $(`#${id}`);
      if (input.value.trim() === "" || !Number.isFinite(Number(input.value))) {
        input.focus();
        throw clientError(`“${what}” needs a number.`, "Type a number there, or press “Reset to the defaults”.");
      }
      return input.value.trim();
    };

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      panel.run("Looking for faces…", async () => {
        const photo = chosenFile($("#detect-image"), "a photo");
        const fields = [
          ["image", photo],
          ["min_face_size", number("detect-min-face", "Min. face")],
          ["thresholds", ["detect-t1", "detect-t2", "detect-t3"].map((id, i) => number(id, ["P-Net", "R-Net", "O-Net"][i])).join(",")],
          ["scale_factor", number("detect-scale", "Pyramid step")],
        ];
        if ($("#detect-max-faces").value.trim() !== "") fields.push(["max_faces", number("detect-max-faces", "Max. faces")]);
        const body = new FormData();
        for (const [name, value] of fields) body.append(name, value);

        const result = await (await api("/v1/detect", { method: "POST", body })).json();
        const photoImg = $("#detect-photo");
        await loaded(photoImg, fileUrls.get($("#detect-image")));
        const count = result.faces.length;
        photoImg.alt = `Your photo with ${count} detected face${count === 1 ? "" : "s"} outlined`;
        drawFaces($("#detect-overlay"), result.width, result.height, result.faces);

        const list = $("#detect-faces");
        list.replaceChildren(...result.faces.map((face, i) => {
          const [x1, y1, x2, y2] = face.box;
          const item = el("li", { tabIndex: 0 },
            el("span", { className: "face-swatch", textContent: String(i + 1), ariaHidden: "true" }),
            el("span", {},
              el("span", { className: "score", textContent: `Face ${i + 1}: score ${round(face.score, 4)}` }),
              el("br"),
              el("span", { className: "box", textContent: `${round(x2 - x1)} × ${round(y2 - y1)} px at (${round(x1)}, ${round(y1)})` })));
          item.firstChild.style.background = FACE_COLOURS[i % FACE_COLOURS.length];
          item.firstChild.setAttribute("aria-hidden", "true");
          const highlight = (on) => {
            const rect = $(`#detect-overlay g[data-face="${i}"] .face-box`);
            if (rect) rect.classList.toggle("active", on);
          };
          item.addEventListener("mouseenter", () => highlight(true));
          item.addEventListener("mouseleave", () => highlight(false));
          item.addEventListener("focus", () => highlight(true));
          item.addEventListener("blur", () => highlight(false));
          return item;
        }));
        $("#detect-summary").textContent = count === 0
          ? `No face found in this ${result.width} × ${result.height} photo. Try a smaller “Min. face” or lower thresholds.`
          : `${count} face${count === 1 ? "" : "s"} found in this ${result.width} × ${result.height} photo.`;
        const total = result.timings_ms && result.timings_ms.total;
        $("#detect-meta").textContent = `Model: ${result.model}` + (total ? ` · ${formatMs(total)} on the server` : "");
        $("#detect-curl").textContent = curlCommand("/v1/detect", fields);
        panel.showResult();
        return count === 0 ? "Done: no face found." : `Done: ${count} face${count === 1 ? "" : "s"}.`;
      });
    });
  }

  // ------------------------------------------------------------------ Verify

  function setupVerify() {
    const panel = new Panel($("#panel-verify"));
    const form = $("#verify-form");

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      panel.run("Comparing the faces…", async () => {
        const first = chosenFile($("#verify-image-a"), "the first photo");
        const second = chosenFile($("#verify-image-b"), "the second photo");
        const fields = [["image_a", first], ["image_b", second], ["face", $("#verify-face").value]];
        panel.sent = [$("#verify-image-a"), $("#verify-image-b")];
        const threshold = $("#verify-threshold").value.trim();
        if (threshold !== "") {
          if (!Number.isFinite(Number(threshold))) {
            throw clientError("The threshold needs to be a number.", "Type a number between -1 and 1, or leave it empty for the default.");
          }
          fields.push(["threshold", threshold]);
        }
        const body = new FormData();
        for (const [name, value] of fields) body.append(name, value);

        const result = await (await api("/v1/verify", { method: "POST", body })).json();
        const sides = [["a", $("#verify-photo-a"), $("#verify-image-a"), "first"], ["b", $("#verify-photo-b"), $("#verify-image-b"), "second"]];
        await Promise.all(sides.map(([, img, input]) => loaded(img, fileUrls.get(input))));
        const colour = result.verified ? "#3bb273" : "#e71d36";
        for (const [side, img, , word] of sides) {
          const face = result.faces[side];
          drawFaces($(`#verify-overlay-${side}`), img.naturalWidth, img.naturalHeight,
            [{ ...face, colour, label: null }], { dimOutside: true });
          img.alt = `The ${word} photo, with the compared face highlighted`;
        }

        const same = result.verified;
        const similarity = result.similarity;
        const verdict = $("#verify-verdict");
        verdict.className = `verdict ${same ? "same" : "different"}`;
        $("#verify-decision").textContent = same ? "Same person" : "Different people";
        $("#verify-explanation").textContent = same
          ? `The faces' similarity is ${round(similarity, 3)}, at or above the threshold of ${round(result.threshold, 3)}: ` +
            "Atelier judges that both photos show the same person."
          : `The faces' similarity is ${round(similarity, 3)}, below the threshold of ${round(result.threshold, 3)}: ` +
            "Atelier judges that the photos show different people.";
        // The scale runs up to 1 (identical) from 0.5, or lower when a value needs room: faces rarely score below.
        const low = Math.max(-1, Math.min(0.5, Math.floor((Math.min(similarity, result.threshold) - 0.05) * 10) / 10));
        const place = (v) => `${((Math.min(1, Math.max(low, v)) - low) / (1 - low)) * 100}%`;
        $("#verify-gauge-fill").style.width = place(similarity);
        $("#verify-gauge-threshold").style.left = place(result.threshold);
        $("#verify-gauge-scale").replaceChildren(...[low, (low + 1) / 2, 1].map((v) => el("span", { textContent: String(Number(v.toFixed(2))) })));
        $("#verify-gauge").setAttribute("aria-label",
          `Similarity ${round(similarity, 3)} on a scale from ${low} to 1; the threshold is ${round(result.threshold, 3)}.`);
        const total = result.timings_ms && result.timings_ms.total;
        $("#verify-meta").textContent = `Distance ${round(result.distance, 3)} · model: ${result.model}` +
          (total ? ` · ${formatMs(total)} on the server` : "");
        $("#verify-curl").textContent = curlCommand("/v1/verify", fields);
        panel.showResult();
        return `Done: ${same ? "same person" : "different people"}.`;
      });
    });
  }

  // ------------------------------------------------------------------ start

  function setupApiKey(onChange) {
    const input = $("#api-key");
    input.value = apiKey();
    const save = () => {
      const key = input.value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
      onChange();
    };
    $("#api-key-form").addEventListener("submit", (event) => { event.preventDefault(); save(); });
  }

  // A file dropped outside a drop zone would make the browser navigate away from the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

  $$("[data-drop]").forEach(setupDrop);
  setupTabs();
  const reloadStyles = setupStylize();
  setupDetect();
  setupVerify();
  setupApiKey(reloadStyles);
  reloadStyles();
  document.documentElement.dataset.ready = "true";
})();
