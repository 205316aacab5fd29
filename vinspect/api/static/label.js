// vinspect labelling workspace: label by keyboard, draw boxes / polygons / brush strokes, undo,
// zoom and pan as in review. Plain JavaScript, no build step, no inline handlers (CSP).
"use strict";

(function () {
  const page = document.body.dataset.page || "";

  function typing(target) {
    const tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  // ---- thumbnail grid: Enter opens the first image, arrows turn pages ---------------------
  if (page === "labelset") {
    document.addEventListener("keydown", function (event) {
      if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) { return; }
      let target = null;
      if (event.key === "Enter" && !(event.target && event.target.closest && event.target.closest("a"))) {
        target = document.querySelector("#thumbs a");
      } else if (event.key === "ArrowRight") {
        target = document.getElementById("next-page");
      } else if (event.key === "ArrowLeft") {
        target = document.getElementById("prev-page");
      }
      if (target) { event.preventDefault(); window.location.assign(target.getAttribute("href")); }
    });
    return;
  }
  if (page !== "label") { return; }

  const root = document.getElementById("labeller");
  const stage = document.getElementById("label-stage");
  const viewport = document.getElementById("label-viewport");
  const svg = document.getElementById("regions");
  const shownLabel = document.getElementById("current-label");
  const regionCount = document.getElementById("region-count");
  const status = document.getElementById("label-status");
  const errorBox = document.getElementById("label-error");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const setName = root.dataset.set;
  const imageId = root.dataset.image;
  const width = Number(root.dataset.width);
  const height = Number(root.dataset.height);
  const settle = root.dataset.settle === "1";
  const good = root.dataset.good;
  const codes = Array.from(document.querySelectorAll("[data-label]")).map(function (b) { return b.dataset.label; })
    .filter(function (c) { return c !== good; });
  const brushRadius = Math.max(2, Math.round(Math.max(width, height) / 60));
  const base = "/api/v1/labelling/" + encodeURIComponent(setName) + "/images/" + imageId;
  const NS = "http://www.w3.org/2000/svg";

  let state = JSON.parse(root.dataset.state || "{}");
  if (!state.regions) { state.regions = []; }
  let busy = false;
  let tool = "move";
  let draft = null;

  // ---- drawing the saved regions and the one being drawn --------------------------------
  function el(name, attrs) {
    const node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function shape(region, cls) {
    if (region.kind === "box") {
      const b = region.xyxy;
      return el("rect", { x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1], class: cls });
    }
    const pts = region.points.map(function (p) { return p[0] + "," + p[1]; }).join(" ");
    if (region.kind === "brush") {
      if (region.points.length === 1) {
        return el("circle", { cx: region.points[0][0], cy: region.points[0][1], r: region.radius, class: cls });
      }
      const line = el("polyline", { points: pts, class: cls + " brush" });
      line.style.strokeWidth = String(2 * region.radius);  // image pixels (CSSOM: allowed by the CSP)
      return line;
    }
    return el(draft && cls === "draft" && !draft.closed ? "polyline" : "polygon", { points: pts, class: cls });
  }

  function render() {
    svg.replaceChildren();
    state.regions.forEach(function (region, i) {
      svg.appendChild(shape(region, "region"));
      const first = region.kind === "box" ? [region.xyxy[0], region.xyxy[1]] : region.points[0];
      const size = Math.max(4, Math.round(Math.max(width, height) / 30));
      const text = el("text", { x: first[0] + 1, y: Math.max(size, first[1] - 2) });
      text.style.fontSize = size + "px";
      text.style.strokeWidth = String(Math.max(0.5, size / 6));
      text.textContent = (i + 1) + " " + region.code;
      svg.appendChild(text);
    });
    if (draft && draft.region) { svg.appendChild(shape(draft.region, "draft")); }
    shownLabel.textContent = state.label || "unlabelled";
    regionCount.textContent = state.regions.length ? "· " + state.regions.length + " region(s)" : "";
    document.querySelectorAll("[data-label]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.label === state.label));
    });
    root.dataset.label = state.label || "";
    root.dataset.regions = String(state.regions.length);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function detailOf(body, statusCode) {
    if (body && typeof body.detail === "string") { return body.detail; }
    if (body && Array.isArray(body.detail)) {
      return body.detail.map(function (d) { return (d.loc || []).slice(1).join(".") + ": " + d.msg; }).join("; ");
    }
    return "not saved (HTTP " + statusCode + ")";
  }

  // ---- saving: the server checks everything; a refusal changes nothing saved ------------
  // Saves run one after another, in the order keys were pressed; leaving the page waits for them.
  let queue = Promise.resolve(null);

  function post(path, body) {
    queue = queue.then(function () { return send(path, body); });
    return queue;
  }

  function send(path, body) {
    busy = true;
    root.dataset.busy = "1";
    return fetch(base + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (data) {
        if (!r.ok) {
          if (r.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname)); }
          throw new Error(detailOf(data, r.status));
        }
        return data;
      });
    }).then(function (data) {
      showError("");
      return data;
    }, function (err) {
      showError("Not saved: " + err.message + ". Your last saved label is unchanged.");
      status.textContent = "Last save refused.";
      return null;
    }).finally(function () {
      busy = false;
      delete root.dataset.busy;
      root.dataset.saved = String(Date.now());
    });
  }

  function save(label, regions) {
    return post(settle ? "/settle" : "/label", { label: label, regions: regions }).then(function (data) {
      if (data) {
        state = { label: data.label, regions: data.regions || [] };
        status.textContent = (settle ? "Settled as " : "Saved ") + (data.label || "unlabelled") + " at "
          + new Date().toLocaleTimeString() + ".";
      }
      draft = null;
      render();
    });
  }

  function undo() {
    if (settle) { showError("Undo changes your own labels; to change a settlement, settle again."); return; }
    post("/undo").then(function (data) {
      if (data) {
        if (data.event_id === null) { status.textContent = "Nothing to undo."; return; }
        state = { label: data.label, regions: data.regions || [] };
        status.textContent = "Undone: now " + (data.label || "unlabelled") + ".";
      }
      render();
    });
  }

  function chooseLabel(label) { save(label, state.regions); }

  function addRegion(region) {
    save(state.label, state.regions.concat([region]));
  }

  // ---- zoom and pan (as in review) ------------------------------------------------------
  const view = { zoom: 1, x: 0, y: 0 };

  function applyView() {
    const w = viewport.clientWidth, h = stage.offsetHeight;
    view.x = Math.min(0, Math.max(w - w * view.zoom, view.x));
    view.y = Math.min(0, Math.max(h - h * view.zoom, view.y));
    stage.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.zoom + ")";
    stage.classList.toggle("zoomed", view.zoom > 1 && tool === "move");
    stage.dataset.zoom = String(Math.round(view.zoom * 100) / 100);
  }

  function setZoom(value, px, py) {
    const next = Math.min(16, Math.max(1, value));
    const cx = px === undefined ? viewport.clientWidth / 2 : px;
    const cy = py === undefined ? stage.offsetHeight / 2 : py;
    view.x = cx - (cx - view.x) * (next / view.zoom);
    view.y = cy - (cy - view.y) * (next / view.zoom);
    view.zoom = next;
    applyView();
  }

  viewport.addEventListener("wheel", function (event) {
    event.preventDefault();
    const box = viewport.getBoundingClientRect();
    setZoom(view.zoom * Math.pow(1.2, -event.deltaY / 100), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  document.getElementById("zoom-in-l").addEventListener("click", function () { setZoom(view.zoom * 1.5); });
  document.getElementById("zoom-out-l").addEventListener("click", function () { setZoom(view.zoom / 1.5); });
  document.getElementById("zoom-fit-l").addEventListener("click", function () { setZoom(1); });

  // ---- tools -----------------------------------------------------------------------------
  function setTool(name) {
    tool = name;
    draft = null;
    document.querySelectorAll("[data-tool]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.tool === name));
    });
    stage.classList.toggle("drawing", name !== "move");
    root.dataset.tool = name;
    applyView();
    render();
  }

  document.querySelectorAll("[data-tool]").forEach(function (b) {
    b.addEventListener("click", function () { setTool(b.dataset.tool); });
  });
  document.querySelectorAll("[data-label]").forEach(function (b) {
    b.addEventListener("click", function () { chooseLabel(b.dataset.label); });
  });

  function imagePoint(event) {
    const p = svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.round(q.x), Math.round(q.y)];
  }

  function regionCode() {
    if (state.label && state.label !== good) { return state.label; }
    showError("Choose the image's defect code first (keys 1-" + Math.min(9, codes.length) + "): a region takes it.");
    return null;
  }

  let pan = null;
  stage.addEventListener("pointerdown", function (event) {
    event.preventDefault();
    if (tool === "move") {
      if (view.zoom <= 1) { return; }
      pan = { x: event.clientX - view.x, y: event.clientY - view.y };
      stage.setPointerCapture(event.pointerId);
      stage.classList.add("dragging");
      return;
    }
    const code = regionCode();
    if (!code) { return; }
    const at = imagePoint(event);
    if (tool === "polygon") {
      if (!draft) { draft = { region: { kind: "polygon", code: code, points: [] } }; }
      draft.region.points.push(at);
      render();
      return;
    }
    stage.setPointerCapture(event.pointerId);
    if (tool === "box") {
      draft = { start: at, region: { kind: "box", code: code, xyxy: [at[0], at[1], at[0], at[1]] } };
    } else {
      draft = { region: { kind: "brush", code: code, radius: brushRadius, points: [at] } };
    }
    render();
  });

  stage.addEventListener("pointermove", function (event) {
    if (pan) {
      view.x = event.clientX - pan.x;
      view.y = event.clientY - pan.y;
      applyView();
      return;
    }
    if (!draft || tool === "polygon") { return; }
    const at = imagePoint(event);
    if (tool === "box" && draft.start) {
      const s = draft.start;
      draft.region.xyxy = [Math.min(s[0], at[0]), Math.min(s[1], at[1]), Math.max(s[0], at[0]), Math.max(s[1], at[1])];
    } else if (tool === "brush") {
      const last = draft.region.points[draft.region.points.length - 1];
      if (Math.abs(last[0] - at[0]) + Math.abs(last[1] - at[1]) >= 2) { draft.region.points.push(at); }
    }
    render();
  });

  ["pointerup", "pointercancel"].forEach(function (name) {
    stage.addEventListener(name, function () {
      if (pan) { pan = null; stage.classList.remove("dragging"); return; }
      if (!draft || tool === "polygon") { return; }
      const region = draft.region;
      draft = null;
      if (region.kind === "box" && (region.xyxy[2] - region.xyxy[0] < 1 || region.xyxy[3] - region.xyxy[1] < 1)) {
        render();
        return;
      }
      addRegion(region);
    });
  });
  stage.addEventListener("dblclick", function (event) { event.preventDefault(); closePolygon(); });
  stage.addEventListener("dragstart", function (event) { event.preventDefault(); });

  function closePolygon() {
    if (!draft || tool !== "polygon") { return; }
    // A double click also added its two clicks as points: drop repeats.
    const pts = draft.region.points.filter(function (p, i, all) {
      return i === 0 || p[0] !== all[i - 1][0] || p[1] !== all[i - 1][1];
    });
    if (pts.length < 3) { showError("A polygon needs at least 3 points."); return; }
    const region = { kind: "polygon", code: draft.region.code, points: pts };
    draft = null;
    addRegion(region);
  }

  function go(id) {
    if (id) {
      queue.then(function () { window.location.assign("/labelling/" + encodeURIComponent(setName) + "/images/" + id + (root.dataset.query || "")); });
    }
  }

  document.addEventListener("keydown", function (event) {
    if (typing(event.target)) { return; }
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (/^[1-9]$/.test(key)) {
      const code = codes[Number(key) - 1];
      if (code) { event.preventDefault(); chooseLabel(code); }
      return;
    }
    const lower = key.toLowerCase();
    const actions = {
      g: function () { chooseLabel(good); },
      u: undo,
      b: function () { setTool("box"); },
      p: function () { setTool("polygon"); },
      r: function () { setTool("brush"); },
      m: function () { setTool("move"); },
      "+": function () { setZoom(view.zoom * 1.5); },
      "=": function () { setZoom(view.zoom * 1.5); },
      "-": function () { setZoom(view.zoom / 1.5); },
      "0": function () { setZoom(1); },
      arrowright: function () { go(root.dataset.after); },
      arrowleft: function () { go(root.dataset.before); },
      enter: closePolygon,
      escape: function () { draft = null; showError(""); render(); },
      delete: function () { if (state.regions.length) { save(state.label, state.regions.slice(0, -1)); } },
      backspace: function () { if (state.regions.length) { save(state.label, state.regions.slice(0, -1)); } },
    };
    const action = actions[lower];
    if (action) { event.preventDefault(); action(); }
  });

  render();
  root.dataset.ready = "1";
})();
