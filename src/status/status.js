// Refreshes the status page every 2 s: fetches /status and renders the same document the
// server rendered, into the same structure (section ids, table and row classes). Builds DOM
// nodes with textContent only: nothing from the document is ever parsed as HTML.
"use strict";
(function () {
  var INTERVAL_MS = 2000;
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function show(v) {
    if (v === null || v === undefined) return "\u2014";
    if (v === true) return "yes";
    if (v === false) return "no";
    return String(v);
  }
  function duration(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    s = s % 60;
    if (!d && !h && !m) return s + "s";
    if (!d && !h) return m + "m " + s + "s";
    if (!d) return h + "h " + m + "m";
    return d + "d " + h + "h";
  }
  function list(items, each) { return (items || []).map(each).join(", "); }

  function keyValues(id, title, rows) {
    var section = el("section"); section.id = id;
    section.appendChild(el("h2", "", title));
    var table = el("table", "kv"), body = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("th", "", r[0]));
      tr.appendChild(el("td", r[2] || "", r[1]));
      body.appendChild(tr);
    });
    table.appendChild(body); section.appendChild(table);
    return section;
  }
  function grid(id, title, columns, rows) {
    var section = el("section"); section.id = id;
    section.appendChild(el("h2", "", title));
    var table = el("table", "grid"), head = el("thead"), hr = el("tr"), body = el("tbody");
    columns.forEach(function (c) { hr.appendChild(el("th", "", c)); });
    head.appendChild(hr);
    rows.forEach(function (r) {
      var tr = el("tr", r[0]);
      r[1].forEach(function (cell) { tr.appendChild(el("td", cell[1] || "", cell[0])); });
      body.appendChild(tr);
    });
    table.appendChild(head); table.appendChild(body); section.appendChild(table);
    return section;
  }

  function gateway(g) {
    var reload = ["none since the start", ""];
    if (g.last_reload) {
      reload = g.last_reload.outcome === "refused"
        ? ["refused: " + show(g.last_reload.problems), "out"] : ["applied", "in"];
    }
    var tls = ["no [tls] listener", ""];
    if (g.tls) {
      var days = g.tls.days_to_expiry;
      tls = [show(g.tls.subject) + ", " + show(days) + " days to expiry",
        days !== null && days < 14 ? "out" : days !== null && days < 30 ? "warn" : ""];
    }
    var requests = Object.keys(g.requests_total || {}).map(function (k) {
      return k + " " + g.requests_total[k];
    }).join(", ");
    return keyValues("gateway", "Gateway", [
      ["version", show(g.version)],
      ["uptime", duration(g.uptime_seconds || 0)],
      ["configuration", show(g.config_source)],
      ["last reload", reload[0], reload[1]],
      ["listeners", list(g.listeners, function (l) { return l.name + " " + l.address; })],
      ["TLS certificate", tls[0], tls[1]],
      ["client connections", show(g.client_connections)],
      ["requests since start", requests]
    ]);
  }

  function chart(title, series) {
    var W = 300, H = 60, max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    var scale = max > 0 ? max : 1;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    series.forEach(function (s) {
      var steps = Math.max(s.values.length - 1, 1), points = [];
      s.values.forEach(function (v, i) {
        if (v !== null && v !== undefined) {
          points.push((W * i / steps).toFixed(1) + "," + (H - H * v / scale).toFixed(1));
        }
      });
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", "line " + s.cls);
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    });
    var figure = el("figure");
    figure.appendChild(svg);
    var caption = el("figcaption", "", title + " (peak " + max.toFixed(1) + ") ");
    series.forEach(function (s) { caption.appendChild(el("span", "key " + s.cls, s.name)); });
    figure.appendChild(caption);
    return figure;
  }
  function charts(history) {
    var samples = (history && history.samples) || [];
    function pick(f) { return samples.map(function (s) { var v = f(s); return v === undefined ? null : v; }); }
    function outcome(name, cls) {
      return { name: name, cls: cls, values: pick(function (s) { return s.requests_per_second[name]; }) };
    }
    var section = el("section"); section.id = "charts";
    section.appendChild(el("h2", "", "Last minutes"));
    var box = el("div", "charts");
    box.appendChild(chart("requests/s by outcome",
      [outcome("forwarded", "ok"), outcome("api", "api"), outcome("401", "warn"), outcome("5xx", "bad")]));
    box.appendChild(chart("latency ms (p50, p99)", [
      { name: "p50", cls: "ok", values: pick(function (s) { return s.p50_ms; }) },
      { name: "p99", cls: "warn", values: pick(function (s) { return s.p99_ms; }) }]));
    box.appendChild(chart("upstream errors/s", [
      { name: "errors", cls: "bad", values: pick(function (s) { return s.upstream_errors_per_second; }) }]));
    section.appendChild(box);
    return section;
  }

  function nodes(all) {
    return grid("nodes", "Upstream nodes",
      ["node", "state", "reason", "back in", "in flight", "idle", "ejections", "last error", "active check", "source"],
      (all || []).map(function (n) {
        var state = n.state === "in" ? "in" : "out";
        var check = n.active_check
          ? (n.active_check.passing ? "passing" : "failing") + " (" + Math.abs(n.active_check.streak) + " in a row)"
          : "off";
        return ["node " + state, [
          [show(n.node)], [state, state], [show(n.reason)],
          [n.back_in_seconds === null || n.back_in_seconds === undefined ? "" : duration(n.back_in_seconds)],
          [show(n.in_flight), "num"], [show(n.idle_connections), "num"], [show(n.ejections), "num"],
          [n.last_error ? show(n.last_error.error) : ""], [check], [show(n.source)]]];
      }));
  }
  function accounts(all) {
    return grid("accounts", "Accounts",
      ["account", "tokens", "upstream credential", "requests/s", "4xx", "5xx", "limited"],
      (all || []).map(function (a) {
        var credential = show(a.credential);
        return ["account", [
          [show(a.account)], [show(a.tokens), "num"],
          [credential, credential === "auto key being made" ? "warn" : ""],
          [show(a.requests_per_second), "num"], [show(a.errors_4xx), "num"],
          [show(a.errors_5xx), "num"], [show(a.limited), "num"]]];
      }));
  }
  function store(s) {
    var stale = s.staleness_seconds !== null && s.max_staleness_seconds !== null &&
      s.staleness_seconds > s.max_staleness_seconds;
    return keyValues("store", "Token store", [
      ["backend", show(s.backend)], ["location", show(s.location)], ["tokens", show(s.tokens)],
      ["journal bytes", show(s.journal_bytes)], ["etcd endpoints", list(s.etcd_endpoints, show)],
      ["staleness (s)", show(s.staleness_seconds), stale ? "out" : ""]
    ]);
  }
  function security(s) {
    var top = list(s.throttled_top, function (t) { return t.address + " (" + t.retry_after_seconds + "s)"; });
    var pool = s.password_pool || {};
    return keyValues("security", "Security", [
      ["failed authentications / min", show(s.auth_failures_per_minute)],
      ["failed authentications since start", show(s.auth_failures_total)],
      ["throttled addresses", (s.throttled_addresses + " " + top).trim(), s.throttled_addresses > 0 ? "warn" : ""],
      ["password pool in use", show(pool.in_use) + " of " + show(pool.capacity)]
    ]);
  }

  function render(doc) {
    var main = document.getElementById("status");
    var fresh = el("main"); fresh.id = "status";
    [gateway(doc.gateway || {}), charts(doc.history), nodes(doc.nodes), accounts(doc.accounts),
      store(doc.store || {}), security(doc.security || {})].forEach(function (s) { fresh.appendChild(s); });
    main.parentNode.replaceChild(fresh, main);
    var body = document.body;
    body.setAttribute("data-refreshes", String(Number(body.getAttribute("data-refreshes") || 0) + 1));
    var generated = document.getElementById("generated");
    generated.setAttribute("data-at", String(doc.generated_at));
    generated.textContent = "refreshed " + new Date(doc.generated_at * 1000).toISOString() +
      "; every 2 s";
    generated.className = "";
  }
  function refresh() {
    fetch("/status", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("GET /status: " + r.status);
        return r.json();
      })
      .then(render)
      .catch(function (e) {
        var generated = document.getElementById("generated");
        generated.textContent = "refresh failed: " + e.message;
        generated.className = "out";
      });
  }
  refresh();
  setInterval(refresh, INTERVAL_MS);
})();
