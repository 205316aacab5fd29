// vinspect reviewer UI: keyboard adjudication, heatmap overlay and zoom, live station status.
// Plain JavaScript, no build step, no inline handlers (the CSP forbids inline script).
"use strict";

(function () {
  const page = document.body.dataset.page || "";

  function typing(target) {
    const tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  // ---- image viewer: heatmap toggle, zoom around a point, drag to pan, wheel zoom ------
  const stage = document.getElementById("stage");
  const viewport = stage ? stage.parentElement : null;
  const heat = document.getElementById("heatmap");
  const heatButton = document.getElementById("toggle-heat");
  const view = { zoom: 1, x: 0, y: 0 };

  function applyView() {
    if (!stage || !viewport) { return; }
    const w = viewport.clientWidth, h = stage.offsetHeight;
    // Keep the image covering the viewport: no panning past its edges.
    view.x = Math.min(0, Math.max(w - w * view.zoom, view.x));
    view.y = Math.min(0, Math.max(h - h * view.zoom, view.y));
    stage.style.transform = "translate(" + view.x + "px, " + view.y + "px) scale(" + view.zoom + ")";
    stage.classList.toggle("zoomed", view.zoom > 1);
    stage.dataset.zoom = String(Math.round(view.zoom * 100) / 100);
  }

  // Zoom to `value`, keeping the image point under (px, py) (viewport pixels) where it is;
  // without a point, around the centre of the view.
  function setZoom(value, px, py) {
    if (!stage || !viewport) { return; }
    const next = Math.min(8, Math.max(1, value));
    const cx = px === undefined ? viewport.clientWidth / 2 : px;
    const cy = py === undefined ? stage.offsetHeight / 2 : py;
    view.x = cx - (cx - view.x) * (next / view.zoom);
    view.y = cy - (cy - view.y) * (next / view.zoom);
    view.zoom = next;
    applyView();
  }

  if (stage && viewport) {
    viewport.addEventListener("wheel", function (event) {
      event.preventDefault();
      const box = viewport.getBoundingClientRect();
      setZoom(view.zoom * Math.pow(1.2, -event.deltaY / 100), event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    let drag = null;
    stage.addEventListener("pointerdown", function (event) {
      if (view.zoom <= 1) { return; }
      drag = { x: event.clientX - view.x, y: event.clientY - view.y };
      stage.setPointerCapture(event.pointerId);
      stage.classList.add("dragging");
      event.preventDefault();
    });
    stage.addEventListener("pointermove", function (event) {
      if (!drag) { return; }
      view.x = event.clientX - drag.x;
      view.y = event.clientY - drag.y;
      applyView();
    });
    ["pointerup", "pointercancel"].forEach(function (name) {
      stage.addEventListener(name, function () { drag = null; stage.classList.remove("dragging"); });
    });
    stage.addEventListener("dragstart", function (event) { event.preventDefault(); });
  }

  // Heatmap legend: place each tick at its share of the colour scale (no inline styles: CSP).
  document.querySelectorAll(".legend [data-at]").forEach(function (tick) {
    const at = Math.min(1, Math.max(0, Number(tick.dataset.at) || 0));
    tick.style.left = (at * 100).toFixed(2) + "%";
  });

  function toggleHeat() {
    if (!heat) { return; }
    heat.hidden = !heat.hidden;
    if (heatButton) { heatButton.setAttribute("aria-pressed", String(!heat.hidden)); }
  }

  if (heatButton) { heatButton.addEventListener("click", toggleHeat); }
  const zin = document.getElementById("zoom-in");
  const zout = document.getElementById("zoom-out");
  const zreset = document.getElementById("zoom-reset");
  if (zin) { zin.addEventListener("click", function () { setZoom(view.zoom * 1.5); }); }
  if (zout) { zout.addEventListener("click", function () { setZoom(view.zoom / 1.5); }); }
  if (zreset) { zreset.addEventListener("click", function () { setZoom(1); }); }

  // ---- review form: decisions by keyboard ----------------------------------------------
  const form = document.getElementById("review-form");
  const decision = document.getElementById("decision");
  const shown = document.getElementById("decision-shown");
  const reason = document.getElementById("reason");
  const password = document.getElementById("sign-password");
  const codes = document.getElementById("defect-code");

  // A suggested reason is typed into the visible Reason field (signed only as shown there);
  // it follows the decision and code until the reviewer edits it.
  function suggestion(value) {
    if (value === "CONFIRMED_DEFECT") { return "confirmed " + ((codes && codes.value) || "defect") + " on image"; }
    if (value === "CONFORMS") { return "blind audit: no defect visible"; }
    return "";
  }

  function suggest(value) {
    if (!reason || (reason.value.trim() && reason.dataset.suggested !== "1")) { return; }
    reason.value = suggestion(value);
    if (reason.value) { reason.dataset.suggested = "1"; } else { delete reason.dataset.suggested; }
  }

  function show(value) {
    document.querySelectorAll("[data-decision]").forEach(function (b) {
      b.classList.toggle("chosen", b.dataset.decision === value);
    });
    if (shown) { shown.textContent = value ? "Decision: " + value.replace(/_/g, " ").toLowerCase() : "No decision yet."; }
    if (codes) {
      // No defect code on a false reject (the part is good) or on a conforming sample.
      codes.disabled = value === "FALSE_REJECT" || value === "CONFORMS";
    }
  }

  function choose(value) {
    if (!decision) { return; }
    decision.value = value;
    show(value);
    suggest(value);
    const needsReason = value === "FALSE_REJECT" || value === "NEEDS_MRB" || value === "ESCAPE";
    if (needsReason && reason && !reason.value.trim()) { reason.focus(); } else if (password) { password.focus(); }
  }

  document.querySelectorAll("[data-decision]").forEach(function (b) {
    b.addEventListener("click", function () { choose(b.dataset.decision); });
  });
  if (decision && decision.value) { show(decision.value); }
  if (reason) { reason.addEventListener("input", function () { delete reason.dataset.suggested; }); }
  if (codes) { codes.addEventListener("change", function () { if (decision) { suggest(decision.value); } }); }

  if (form) {
    form.addEventListener("submit", function (event) {
      if (decision && !decision.value) {
        event.preventDefault();
        if (shown) { shown.textContent = "Choose a decision first (" + (page === "sample" ? "G or C" : "C, F or M") + ")."; }
      }
    });
  }
  if (reason && password) {
    reason.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !password.value) { event.preventDefault(); password.focus(); }
    });
  }

  const keys = {
    c: function () { choose(page === "sample" ? "ESCAPE" : "CONFIRMED_DEFECT"); },
    f: function () { if (page === "review") { choose("FALSE_REJECT"); } },
    m: function () { if (page === "review") { choose("NEEDS_MRB"); } },
    g: function () { if (page === "sample") { choose("CONFORMS"); } },
    h: toggleHeat,
    "+": function () { setZoom(view.zoom * 1.5); },
    "=": function () { setZoom(view.zoom * 1.5); },
    "-": function () { setZoom(view.zoom / 1.5); },
    "0": function () { setZoom(1); },
    n: function () {
      const current = window.location.pathname.split("/").pop();
      window.location.assign("/queue/next?after=" + encodeURIComponent(current));
    },
  };

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (page === "queue" && event.key === "Enter") {
      const start = document.getElementById("start");  // a filtered queue starts at its own first item
      window.location.assign(start ? start.getAttribute("href") : "/queue/next");
      return;
    }
    if (page !== "review" && page !== "sample" && page !== "ncr") { return; }
    if (event.key === "Enter" && form && password && page !== "ncr") {
      // Enter outside a field: to the password first, then sign (the same as the button).
      event.preventDefault();
      if (!password.value) { password.focus(); } else { form.requestSubmit(); }
      return;
    }
    const digit = /^[1-9]$/.test(event.key) ? Number(event.key) : 0;
    if (digit && codes && page !== "ncr") {
      event.preventDefault();
      if (codes.disabled) { return; }
      const offset = codes.options.length && codes.options[0].value === "" ? 1 : 0;
      if (digit - 1 + offset < codes.options.length) {
        codes.selectedIndex = digit - 1 + offset;
        codes.dispatchEvent(new Event("change"));
      }
      return;
    }
    const action = keys[event.key.toLowerCase()] || keys[event.key];
    if (action && (page !== "ncr" || "h+=-0".indexOf(event.key) >= 0)) { event.preventDefault(); action(); }
  });

  // ---- live station status -------------------------------------------------------------
  if (page === "station") {
    const state = document.getElementById("station-state");
    const age = document.getElementById("station-age");
    const body = document.querySelector("#station-rows tbody");

    function readable(value) {
      // Four significant digits, like the server-rendered page (no 36.188438500000004).
      if (typeof value === "number" && !Number.isInteger(value)) { return String(Number(value.toPrecision(4))); }
      return JSON.stringify(value);
    }

    function flatten(value, prefix, rows, depth) {
      if (value && typeof value === "object" && !Array.isArray(value) && depth < 4) {
        Object.keys(value).sort().forEach(function (k) {
          flatten(value[k], prefix ? prefix + "." + k : k, rows, depth + 1);
        });
      } else {
        rows.push([prefix, typeof value === "string" ? value : readable(value)]);
      }
      return rows;
    }

    function refresh() {
      fetch("/api/v1/station/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) { return; }
          state.textContent = s.state;
          document.querySelectorAll("[data-key]").forEach(function (el) {
            const value = el.dataset.key.split(".").reduce(function (o, k) {
              return o && typeof o === "object" ? o[k] : undefined;
            }, s.snapshot);
            el.textContent = value === undefined || value === null ? "—"
              : (typeof value === "number" ? readable(value) : String(value));
          });
          age.textContent = s.age_s === null ? "station not running" : "updated " + s.age_s + " s ago";
          body.replaceChildren.apply(body, flatten(s.snapshot, "", [], 0).map(function (row) {
            const tr = document.createElement("tr");
            row.forEach(function (cell) {
              const td = document.createElement("td");
              td.textContent = String(cell).slice(0, 200);
              tr.appendChild(td);
            });
            return tr;
          }));
        })
        .catch(function () { age.textContent = "status unavailable"; });
    }
    window.setInterval(refresh, 1000);
  }

  // ---- models page: a candidate's evaluation runs in the background; reload when it ends --------
  document.querySelectorAll("[data-evaluation-poll]").forEach(function (el) {
    const url = el.dataset.evaluationPoll;
    const timer = window.setInterval(function () {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (job && job.status !== "running") {
            window.clearInterval(timer);
            window.location.reload();
          }
        })
        .catch(function () { /* the next tick tries again */ });
    }, 1500);
  });
})();
