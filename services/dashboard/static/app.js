"use strict";
// One script for every page: it builds the page's sections, then fills them from /api/live (server-sent
// events, the page's data every second). Values are put in the DOM as text, never as markup.
const PAGE = document.body.dataset.page;
const main = document.getElementById("main");
const tw = window.tw = {data: null, charts: {}};
const COLOURS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#8b949e"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}
function section(title, id) {
  const body = el("div", {id});
  main.append(el("h2", {}, title), body);
  return body;
}
function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 2 : 6);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function table(id, rows, cols) {
  const box = document.getElementById(id);
  const t = el("table", {"data-rows": String(rows.length)});
  if (!rows.length) { t.append(el("tr", {}, el("td", {}, "(none)"))); box.replaceChildren(t); return; }
  cols = cols || Object.keys(rows[0]);
  t.append(el("tr", {}, ...cols.map(c => el("th", {}, c))));
  for (const r of rows) {
    const tr = el("tr");
    for (const c of cols) {
      const td = el("td", {}, fmt(r[c]));
      if (c === "side" && (r[c] === "buy" || r[c] === "sell")) td.className = r[c];
      tr.append(td);
    }
    t.append(tr);
  }
  box.replaceChildren(t);
}
function chart(id, title, names, columns) {
  // columns: [xs, ys1, ys2, ...]; the chart is rebuilt when its series change, else given new data.
  const box = document.getElementById(id);
  const key = names.join("|");
  const old = tw.charts[id];
  if (old && old.key === key) { old.plot.setData(columns); return; }
  if (old) old.plot.destroy();
  const series = [{}, ...names.map((n, i) => ({label: n, stroke: COLOURS[i % COLOURS.length], width: n === "total" ? 2 : 1, spanGaps: true}))];
  const opts = {title, width: Math.max(box.clientWidth, 600), height: 260, series,
    axes: [{stroke: "#8b949e", grid: {stroke: "#21262d"}}, {stroke: "#8b949e", grid: {stroke: "#21262d"}, size: 80}]};
  tw.charts[id] = {key, plot: new uPlot(opts, columns, box)};
}

const PAGES = {
  overview: {
    build() {
      section("Risk", "risk");
      section("Equity (total and per venue)", "equity");
      section("Feeds and venues", "venues");
      main.append(el("div", {class: "row"}, el("div", {}, el("h2", {}, "Positions"), el("div", {id: "positions"})),
        el("div", {}, el("h2", {}, "Balances"), el("div", {id: "balances"}))));
      section("Open orders", "open_orders");
    },
    render(d) {
      riskLine("risk", d.state);
      const names = Object.keys(d.equity.series);
      if (d.equity.t.length) chart("equity", "equity", names.map(n => n === "*" ? "total" : n), [d.equity.t, ...names.map(n => d.equity.series[n])]);
      else document.getElementById("equity").textContent = "(no equity recorded yet)";
      venueTable("venues", d.state);
      table("positions", d.positions);
      table("balances", d.balances, ["exchange", "asset", "free", "locked", "borrowed"]);
      table("open_orders", d.open_orders);
    },
  },
  strategies: {
    build() {
      const form = el("form", {id: "filters"});
      for (const f of ["strategy", "exchange", "symbol"]) form.append(el("input", {name: f, placeholder: f, value: new URLSearchParams(location.search).get(f) || ""}), " ");
      form.append(el("button", {type: "submit"}, "Filter"));
      main.append(el("h2", {}, "Filter"), form);
      section("PnL per strategy (net cash flow of fills, in the quote asset)", "strategy_pnl");
      section("Orders", "orders");
      section("Fills", "fills");
    },
    render(d) { table("strategy_pnl", d.strategy_pnl); table("orders", d.orders); table("fills", d.fills); },
  },
  arbitrage: {
    build() {
      section("Opportunities in the last 24 h by decision (fired: executed; else why not)", "arb_decisions");
      section("Latest opportunities: decision or why not, detected edge (net_return after fees), expected profit, planned legs", "arb_opportunities");
      section("Executions: expected vs realised profit, legs, latency, unwinds", "arb_executions");
    },
    render(d) {
      table("arb_decisions", d.arb_decisions);
      table("arb_opportunities", d.arb_opportunities);
      table("arb_executions", d.arb_executions);
    },
  },
  risk: {
    build() {
      section("State", "risk");
      const box = section("Kill switch", "controls");
      box.append(el("input", {id: "op-token", type: "password", placeholder: "operator token", autocomplete: "off"}), " ",
        el("input", {id: "op-reason", placeholder: "reason"}), " ", el("input", {id: "op-exchange", placeholder: "venue (all if empty)"}), " ",
        el("button", {id: "halt", class: "danger"}, "Halt"), " ", el("button", {id: "resume"}, "Resume"), " ", el("span", {id: "op-result"}));
      document.getElementById("halt").addEventListener("click", () => control("halt"));
      document.getElementById("resume").addEventListener("click", () => control("resume"));
      section("Venues", "venues");
      section("Active halts", "halts");
      section("Crash detector (markets not normal; none: every market normal)", "crashes");
      section("Open crash hedges", "hedges");
      section("Events", "risk_events");
    },
    render(d) {
      riskLine("risk", d.state);
      venueTable("venues", d.state);
      table("halts", (d.state && d.state.halts) || []);
      table("crashes", Object.entries((d.state && d.state.crashes) || {}).map(([market, state]) => ({market, state})));
      table("hedges", Object.entries((d.state && d.state.hedges) || {}).map(([market, h]) => ({market, ...h})));
      table("risk_events", d.risk_events);
    },
  },
  policies: {
    build() {
      section("Registry leaderboard", "policies");
      const pick = el("select", {id: "policy-pick"});
      pick.addEventListener("change", () => { location.search = new URLSearchParams({policy: pick.value}).toString(); });
      main.append(el("h2", {}, "Equity curve"), el("p", {}, "Held-out evaluation of the policy in its online round: the bars"
        + " after its training data, after costs, as equity / start. Policy: ", pick), el("div", {id: "policy_equity"}));
    },
    render(d) {
      table("policies", d.policies);
      const pick = document.getElementById("policy-pick");
      if (pick.options.length !== d.with_curves.length) pick.replaceChildren(...d.with_curves.map(id => el("option", {value: id}, id)));
      const c = d.equity;
      if (c.policy === null) { document.getElementById("policy_equity").textContent = "(no policy has a held-out equity curve yet: each online round records one)"; return; }
      pick.value = c.policy;
      chart("policy_equity", "held-out equity of " + c.policy, [c.policy], [c.t, c.equity]);
    },
  },
  bus: {
    build() { section("Streams", "streams"); section("Messages per second", "rate"); section("Consumer lag (largest group)", "lag"); },
    render(d) {
      table("streams", d.streams.flatMap(s => (s.groups.length ? s.groups : [{}]).map((g, i) => ({
        stream: i ? "" : s.name, length: i ? "" : s.length, "msgs/s": i ? "" : Math.round(s.msgs_per_s || 0),
        "last entry (s)": i ? "" : s.last_entry_age_s, group: g.name || "-", pending: g.pending ?? "", lag: g.lag ?? ""}))));
      const h = d.history;
      if (h.length < 2) return;
      const names = [...new Set(h.flatMap(p => Object.keys(p.rate)))].sort();
      chart("rate", "msgs/s", names, [h.map(p => p.t), ...names.map(n => h.map(p => p.rate[n] ?? null))]);
      chart("lag", "lag", names, [h.map(p => p.t), ...names.map(n => h.map(p => p.lag[n] ?? null))]);
    },
  },
};

function riskLine(id, state) {
  const box = document.getElementById(id);
  if (!state || state.ts === undefined) { box.textContent = "(the risk service has not reported yet)"; return; }
  const status = el("span", {class: state.halted ? "halted" : "running", id: "risk-status"}, state.halted ? "HALTED" : "running");
  const why = state.halted ? " — " + state.halted : "";
  box.replaceChildren(status, why, `   equity ${fmt(state.equity)}, drawdown today ${fmt(state.drawdown_intraday)}, total ${fmt(state.drawdown_total)}`);
}
function venueTable(id, state) {
  const venues = (state && state.venues) || {};
  table(id, Object.entries(venues).map(([name, v]) => ({venue: name, halted: v.halted || "", "data age (s)": v.data_age_s,
    equity: v.equity, "gross exposure": v.gross_exposure, "net exposure": v.net_exposure, "realized": v.realized_pnl,
    "unrealized": v.unrealized_pnl, margin: v.margin_level})));
}
async function control(action) {
  const csrf = (document.cookie.match(/(?:^|; )tw_csrf=([^;]*)/) || [])[1] || "";
  const body = {token: document.getElementById("op-token").value, reason: document.getElementById("op-reason").value,
    exchange: document.getElementById("op-exchange").value};
  const r = await fetch("/api/" + action, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
  const out = document.getElementById("op-result");
  if (r.ok) {
    const d = await r.json();
    out.textContent = action + " sent; halts now: " + (d.halts.map(h => h.id).join(", ") || "none") +
      "; confirmed by: " + (d.confirmed_by.join(", ") || "none") +
      (Object.keys(d.refused_by).length ? "; REFUSED by: " + Object.keys(d.refused_by).join(", ") + " (not in force there)" : "") +
      (d.not_confirmed.length ? "; NOT confirmed by: " + d.not_confirmed.join(", ") + " (down or stalled)" : "");
  } else {
    out.textContent = "refused: " + await r.text();
  }
  out.dataset.status = String(r.status);
}

function start() {
  const page = PAGES[PAGE];
  page.build();
  const source = new EventSource("/api/live?" + new URLSearchParams({page: PAGE, ...Object.fromEntries(new URLSearchParams(location.search))}));
  source.onmessage = (e) => {
    tw.data = JSON.parse(e.data);
    page.render(tw.data);
    document.getElementById("updated").textContent = "live · " + new Date().toISOString().slice(11, 19) + " UTC";
    document.body.dataset.rendered = "1";
  };
  source.onerror = () => { document.getElementById("updated").textContent = "reconnecting…"; };
}
start();
