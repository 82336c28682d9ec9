// The leaderboard page's behaviour: filters, the Pareto chart (Vega-Lite), the sortable table and the CSV download.
// Every text from the results is set as DOM text (textContent), never parsed as markup.
"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("effbench-data").textContent);
  const ROWS = DATA.rows;
  const GATE_RESULTS = ["pass", "fail", "inconclusive"];
  const FILTERS = [
    { key: "model", title: "Model", values: (r) => [r.model] },
    { key: "machine", title: "Hardware", values: (r) => [hardware(r)] },
    { key: "stage", title: "Stage", values: (r) => [r.stage] },
    { key: "technique", title: "Technique", values: (r) => r.techniques },
  ];
  const GATE_LEVELS = [...new Set(ROWS.flatMap((r) => Object.keys(r.gates)))].sort();
  const AXES = DATA.axes.filter((a) => ROWS.some((r) => a in r.axes));
  const state = { axis: DATA.axis, unchecked: new Set(), sortKey: "Rank", sortDir: 1 };

  function hardware(r) {
    return `${r.machine} (${r.fingerprint})`;
  }

  function element(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    return node;
  }

  function fixed(value, digits = 3) {
    if (value === null || value === undefined) return "–";
    const small = value !== 0 && Math.abs(value) < 0.5 * 10 ** -digits;
    return value.toFixed(small ? Math.min(12, 1 - Math.floor(Math.log10(Math.abs(value)))) : digits);
  }

  function figureText(f, digits = 3) {
    if (!f) return "–";
    const [v, low, high] = [f.value, f.low, f.high].map((x) => fixed(x, digits));
    return low === high ? v : `${v} [${low}, ${high}]`; // low = high: nothing known of its uncertainty, or too little
  }

  function axisHeader(axis, rows) {
    const headers = [...new Set(rows.filter((r) => axis in r.axes).map((r) => r.axes[axis].header))];
    return headers.join(" / ") || axis;
  }

  function gatesText(r) {
    const entries = Object.entries(r.gates);
    return entries.length ? entries.map(([level, result]) => `${level}: ${result}`).join(", ") : "–";
  }

  function versionsText(r) {
    return Object.entries(r.versions).map(([lib, v]) => `${lib} ${v}`).join(", ");
  }

  // --- filters -------------------------------------------------------------------------------------------------
  function checkbox(group, value, legend) {
    const label = element("label");
    const box = element("input", undefined, { type: "checkbox", "data-filter": group, "data-value": value });
    box.checked = true;
    box.addEventListener("change", () => {
      const id = `${group}\u0000${value}`;
      if (box.checked) state.unchecked.delete(id);
      else state.unchecked.add(id);
      update();
    });
    label.append(box, document.createTextNode(` ${legend}`));
    return label;
  }

  function buildFilters() {
    const holder = document.getElementById("filters");
    for (const f of FILTERS) {
      const set = element("fieldset", undefined, { "data-filter-group": f.key });
      set.append(element("legend", f.title));
      for (const value of [...new Set(ROWS.flatMap(f.values))].sort()) set.append(checkbox(f.key, value, value));
      holder.append(set);
    }
    if (!GATE_LEVELS.length) {
      const none = element("fieldset", undefined, { "data-filter-group": "gate" });
      none.append(element("legend", "Gate result"), element("span", "no gate results in these runs", { class: "note" }));
      holder.append(none);
    }
    for (const level of GATE_LEVELS) {
      const gate = element("fieldset", undefined, { "data-filter-group": `gate ${level}` });
      gate.append(element("legend", `Gate ${level}`));
      for (const result of GATE_RESULTS) gate.append(checkbox(`gate ${level}`, result, result));
      holder.append(gate);
    }
  }

  function kept(r) {
    const off = (group, value) => state.unchecked.has(`${group}\u0000${value}`);
    if (FILTERS.some((f) => f.values(r).some((v) => off(f.key, v)))) return false;
    return !Object.entries(r.gates).some(([level, result]) => off(`gate ${level}`, result));
  }

  // --- chart ---------------------------------------------------------------------------------------------------
  function dominates(a, b) {
    // a beats b beyond the 95 % intervals on one axis and is not beaten beyond them on the other (as the Markdown
    // leaderboard decides, effbench.measure.decisions.dominates)
    const aCheaper = a.x_high < b.x_low;
    const bCheaper = b.x_high < a.x_low;
    const aBetter = a.score_low > b.score_high;
    const bBetter = b.score_low > a.score_high;
    return (aCheaper || aBetter) && !(bCheaper || bBetter);
  }

  function paretoFront(points) {
    // per machine: resource figures of different machines are not comparable
    return points.map((p) => !points.some((q) => q.machine === p.machine && dominates(q, p)));
  }

  function chartPoints(rows) {
    const axis = state.axis;
    const points = rows
      .filter((r) => r.score && axis in r.axes)
      .map((r) => {
        const f = r.axes[axis].figure;
        return {
          run_id: r.run_id,
          label: `${r.model} · ${r.technique}`,
          machine: hardware(r),
          x: f.value,
          x_low: f.low,
          x_high: f.high,
          score: r.score.value,
          score_low: r.score.low,
          score_high: r.score.high,
          x_text: `${figureText(f, r.axes[axis].digits)} (${r.axes[axis].quantity})`,
          score_text: `${figureText(r.score)} (mean of ${r.score_of})`,
          stage: r.stage,
          gates: gatesText(r),
          versions: versionsText(r),
          scenario: r.scenario || "–",
          revision: r.revision || "not read from a downloaded dataset",
          placement: r.placement || "–",
        };
      });
    const front = paretoFront(points);
    points.forEach((p, i) => {
      p.pareto = front[i] ? "Pareto-optimal" : "dominated";
    });
    return points;
  }

  function errorBars(field) {
    // a rule from the low to the high end of each 95 % interval, on the x or the score (y) axis
    const channel = field === "x" ? "x" : "y";
    return {
      transform: [{ filter: `datum.${field}_low < datum.${field}_high` }],
      mark: { type: "rule", opacity: 0.6 },
      encoding: {
        [channel]: { field: `${field}_low`, type: "quantitative" },
        [`${channel}2`]: { field: `${field}_high` },
        color: { field: "machine", type: "nominal" },
      },
    };
  }

  function spec(points, rows) {
    const tooltip = [
      ["label", "Model · technique"],
      ["score_text", "Score, 95 % interval"],
      ["x_text", axisHeader(state.axis, rows)],
      ["pareto", "Pareto"],
      ["run_id", "Run"],
      ["machine", "Hardware"],
      ["placement", "Placement"],
      ["stage", "Stage"],
      ["gates", "Gates"],
      ["scenario", "Load scenario"],
      ["versions", "Versions"],
      ["revision", "Dataset revision"],
    ].map(([field, title]) => ({ field, title, type: "nominal" }));
    const color = { field: "machine", type: "nominal", title: "Hardware", legend: { orient: "bottom", columns: 1, labelLimit: 600 } };
    return {
      width: 760,
      height: 420,
      data: { values: points },
      encoding: {
        x: { field: "x", type: "quantitative", title: `${axisHeader(state.axis, rows)} (lower is better)`,
             scale: { zero: false, nice: true, padding: 16 } },
        y: { field: "score", type: "quantitative", title: "score (higher is better)",
             scale: { zero: false, nice: true, padding: 16 } },
      },
      layer: [
        ...(points.some((p) => p.x_low < p.x_high) ? [errorBars("x")] : []),
        ...(points.some((p) => p.score_low < p.score_high) ? [errorBars("score")] : []),
        { transform: [{ filter: "datum.pareto === 'Pareto-optimal'" }],
          mark: { type: "line", interpolate: "step-after", strokeDash: [4, 3] },
          encoding: { color, order: { field: "x", type: "quantitative" } } },
        { name: "points", mark: { type: "point", filled: true, size: 110, stroke: "black", strokeWidth: 0.6 },
          params: [{ name: "zoom", select: "interval", bind: "scales" }],
          encoding: {
            color,
            shape: { field: "pareto", type: "nominal", title: "Pareto",
                     scale: { domain: ["Pareto-optimal", "dominated"], range: ["diamond", "circle"] } },
            opacity: { condition: { test: "datum.pareto === 'Pareto-optimal'", value: 1 }, value: 0.55 },
            tooltip,
          } },
      ],
    };
  }

  let drawing = Promise.resolve();
  function drawChart(rows) {
    const points = chartPoints(rows);
    const note = document.getElementById("chart-note");
    const missing = rows.length - points.length;
    note.textContent =
      `${points.length} runs plotted. Score: mean of ${[...new Set(rows.map((r) => r.score_of))].join(" / ")}` +
      (missing ? `; ${missing} shown in the table have no score or no ${state.axis} figure` : "") +
      ". Error bars: 95 % intervals. Pareto-optimal points (diamonds, joined per machine) are computed among the " +
      "points shown, per machine (resource figures of different machines are not comparable): a point is dominated " +
      "only by one better beyond the intervals on one axis and not worse beyond them on the other. Drag to pan, " +
      "scroll to zoom, double-click to reset.";
    const chart = document.getElementById("chart");
    drawing = drawing.then(async () => {
      // window.effbenchChart: the drawn view and its points (what the browser tests read)
      window.effbenchChart?.finalize?.(); // the previous view's listeners and tooltip go with it
      if (!points.length) {
        chart.replaceChildren(element("p", "No run shown has both a score and this figure.", { class: "note" }));
        window.effbenchChart = { points };
        return;
      }
      const options = { renderer: "svg", actions: { export: true, source: false, compiled: false, editor: false } };
      const result = await vegaEmbed(chart, spec(points, rows), options);
      window.effbenchChart = { view: result.view, finalize: result.finalize, points };
    });
    return drawing;
  }

  // --- table and CSV -------------------------------------------------------------------------------------------
  function columns(rows) {
    const figure = (title, get, digits) => ({ title, get, text: (r) => figureText(get(r), digits(r)), figure: true });
    return [
      { title: "Rank", get: (r) => r.rank, text: (r) => r.rank_text, numeric: true },
      { title: "Model", get: (r) => r.model },
      { title: "Technique", get: (r) => r.technique },
      { title: "Stage", get: (r) => r.stage },
      { title: "Hardware", get: (r) => hardware(r) },
      figure("Score", (r) => r.score, () => 3),
      ...AXES.map((a) =>
        figure(axisHeader(a, rows), (r) => (a in r.axes ? r.axes[a].figure : null), (r) => r.axes[a]?.digits),
      ),
      { title: "Gates", get: (r) => gatesText(r) },
      { title: "Run", get: (r) => r.run_id },
    ];
  }

  function sortValue(column, r) {
    const v = column.get(r);
    if (column.figure) return v ? v.value : null;
    return v;
  }

  function sorted(rows, cols) {
    const column = cols.find((c) => c.title === state.sortKey) || cols[0];
    return [...rows].sort((a, b) => {
      const x = sortValue(column, a);
      const y = sortValue(column, b);
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1; // missing last
      if (y === null || y === undefined) return -1;
      const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return order * state.sortDir;
    });
  }

  function drawTable(rows) {
    const cols = columns(ROWS);
    const head = document.querySelector("#table thead");
    const body = document.querySelector("#table tbody");
    const tr = element("tr");
    for (const c of cols) {
      const th = element("th", c.title, { scope: "col" });
      if (c.title === state.sortKey) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === c.title ? -state.sortDir : 1;
        state.sortKey = c.title;
        drawTable(shownRows());
      });
      tr.append(th);
    }
    head.replaceChildren(tr);
    body.replaceChildren(
      ...sorted(rows, cols).map((r) => {
        const row = element("tr", undefined, { "data-run": r.run_id });
        for (const c of cols) {
          const text = c.text ? c.text(r) : String(c.get(r) ?? "–");
          row.append(element("td", text, c.figure || c.numeric ? { class: "num" } : {}));
        }
        return row;
      }),
    );
  }

  function csvCell(value) {
    if (value === null || value === undefined) return "";
    let text = String(value);
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`; // not a spreadsheet formula
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  function csv() {
    const cols = columns(ROWS);
    const header = cols.flatMap((c) => (c.figure ? [c.title, `${c.title} low`, `${c.title} high`] : [c.title]));
    const lines = [header.map(csvCell).join(",")];
    for (const r of sorted(shownRows(), cols)) {
      const cells = cols.flatMap((c) => {
        if (!c.figure) return [c.text ? c.text(r) : c.get(r)];
        const f = c.get(r);
        if (!f) return [null, null, null];
        return f.low === f.high ? [f.value, null, null] : [f.value, f.low, f.high];
      });
      lines.push(cells.map(csvCell).join(","));
    }
    return `${lines.join("\r\n")}\r\n`;
  }

  function download() {
    const url = URL.createObjectURL(new Blob([csv()], { type: "text/csv;charset=utf-8" }));
    const link = element("a", undefined, { href: url, download: "leaderboard.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // --- the page ------------------------------------------------------------------------------------------------
  function shownRows() {
    return ROWS.filter(kept);
  }

  function update() {
    const rows = shownRows();
    drawTable(rows);
    document.getElementById("summary").textContent =
      `${rows.length} of ${ROWS.length} successful runs shown, from ${DATA.source}; ` +
      `machines: ${new Set(ROWS.map((r) => r.fingerprint)).size}. Failed and not-applicable runs are not shown.`;
    return drawChart(rows);
  }

  const select = document.getElementById("axis");
  for (const a of AXES) select.append(element("option", `${a}: ${axisHeader(a, ROWS)}`, { value: a }));
  select.value = state.axis;
  select.addEventListener("change", () => {
    state.axis = select.value;
    update();
  });
  document.getElementById("download").addEventListener("click", download);
  document.getElementById("footer").textContent =
    `Rendered by effbench ${DATA.effbench} (effbench leaderboard --html); chart by Vega ${DATA.vega} ` +
    "and Vega-Lite, inlined: this page loads nothing from the network.";
  buildFilters();
  update();
})();
