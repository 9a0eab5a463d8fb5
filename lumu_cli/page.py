"""The live page served at `/`: one self-contained HTML document (no external scripts, fonts or
stylesheets, for air-gapped use) that polls /count once a second and shows it."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lumu: unique device IPs</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; background: #f6f8fa; }
  h1 { font-size: 1rem; font-weight: 600; color: #57606a; margin: 0 0 .5rem; }
  #unique { font-size: 5rem; font-weight: 700; font-variant-numeric: tabular-nums; margin: 0; }
  .row { display: flex; gap: 2.5rem; margin: 1rem 0 1.5rem; flex-wrap: wrap; }
  .figure b { display: block; font-size: 1.6rem; font-variant-numeric: tabular-nums; }
  .figure span { color: #57606a; font-size: .85rem; }
  table { border-collapse: collapse; margin: .25rem 0 1.5rem; min-width: 22rem; }
  th, td { text-align: right; padding: .2rem .8rem; border-bottom: 1px solid #d0d7de; }
  th:first-child, td:first-child { text-align: left; }
  #health { display: inline-block; padding: .15rem .6rem; border-radius: 1rem; color: #fff; }
  .up { background: #1a7f37; } .down { background: #cf222e; } .stale { background: #9a6700; }
  #window-chart { display: block; width: 40rem; max-width: 100%; height: 6rem;
                  margin: .25rem 0 1.5rem; }
  .bar { fill: #0969da; } .bar:hover { fill: #1d2733; }
  footer { color: #57606a; font-size: .8rem; }
</style>
</head>
<body>
<h1>lumu: unique device IPs <span id="health" class="stale">connecting</span></h1>
<p id="unique">-</p>
<div class="row">
  <div class="figure"><b id="messages">-</b><span>messages</span></div>
  <div class="figure"><b id="rate">-</b><span>messages/s</span></div>
  <div class="figure"><b id="invalid">-</b><span>invalid</span></div>
  <div class="figure"><b id="lag">-</b><span>lag</span></div>
</div>
<section id="windows" hidden>
<h1>windows</h1>
<table><thead><tr><th>size</th><th>unique IPs</th><th>messages</th><th>late</th><th>future</th>
</tr></thead><tbody id="window-sizes"></tbody></table>
<h1>unique IPs per <span id="window-size">-</span> window</h1>
<svg id="window-chart" role="img" aria-label="unique IPs per window" preserveAspectRatio="none">
</svg>
</section>
<h1>invalid by reason</h1>
<table><thead><tr><th>reason</th><th>records</th></tr></thead><tbody id="reasons"></tbody></table>
<h1>partitions</h1>
<table><thead><tr><th>partition</th><th>counted</th><th>offset</th><th>lag</th></tr></thead>
<tbody id="partitions"></tbody></table>
<footer>updated <span id="updated">-</span>; from <code>/count</code>, once a second;
<a href="/api/docs">the API</a></footer>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const number = (n) => (n === null || n === undefined) ? "-" : n.toLocaleString("en-US");
const put = (id, text) => { document.getElementById(id).textContent = text; };
function rows(id, cells) {
  const body = document.getElementById(id);
  body.replaceChildren(...cells.map((values) => {
    const row = document.createElement("tr");
    for (const value of values) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  }));
}
const MS = {s: 1e3, m: 6e4, h: 36e5, d: 864e5};
const millis = (size) => parseInt(size, 10) * MS[size.at(-1)];  // "15m" -> 900000
function shape(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}
function chart(size, counts) {
  // A bar per window with records, placed by its start: windows without records are gaps.
  const ms = millis(size);
  const slot = (c) => (Date.parse(c.start) - Date.parse(counts[0].start)) / ms;
  const top = counts.reduce((most, c) => Math.max(most, c.unique_ips), 1);
  const svg = document.getElementById("window-chart");
  svg.setAttribute("viewBox", `0 0 ${counts.length ? slot(counts.at(-1)) + 1 : 1} 100`);
  svg.replaceChildren();
  for (const c of counts) {
    const height = 100 * c.unique_ips / top;
    const bar = shape("rect", {class: "bar", "data-unique": c.unique_ips,
                               x: slot(c) + .1, y: 100 - height, width: .8, height});
    const title = shape("title", {});
    title.textContent = `${c.start}: ${number(c.unique_ips)} unique IPs`;
    bar.append(title);
    svg.append(bar);
  }
}
function windows(sizes) {
  // Without --window, /count has no `windows`: the section stays hidden.
  document.getElementById("windows").hidden = !sizes;
  if (!sizes) return;
  const now = Date.now();
  rows("window-sizes", Object.entries(sizes).map(([size, w]) => {
    const current = w.counts.find((c) => Date.parse(c.start) === now - now % millis(size));
    return [size, number(current?.unique_ips), number(current?.messages),
            number(w.late), number(w.future)];
  }));
  const [size, smallest] = Object.entries(sizes)[0];
  put("window-size", size);
  chart(size, smallest.counts);
}
function health(word, kind) {
  const badge = document.getElementById("health");
  badge.textContent = word;
  badge.className = kind;
}
async function refresh() {
  try {
    const response = await fetch("/count", {cache: "no-store"});
    const count = await response.json();
    put("unique", number(count.unique_ips));
    put("messages", number(count.messages));
    put("rate", number(Math.round(count.rate)));
    put("invalid", number(count.invalid));
    put("lag", number(count.lag + count.state_lag));
    put("updated", count.updated_at);
    rows("reasons", Object.entries(count.invalid_by_reason).map(([r, n]) => [r, number(n)]));
    rows("partitions", count.partitions.map(
      (p) => [p.partition, p.owner, number(p.offset), number(p.lag)]));
    windows(count.windows);
    health(count.healthy ? "broker up" : "broker unreachable", count.healthy ? "up" : "down");
  } catch (error) {
    health("lumu not answering", "stale");
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
