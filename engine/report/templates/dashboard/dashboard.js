// The live dashboard's script: polls /state.json every second and shows it. Every value goes
// into the DOM as text (textContent), never as markup, so nothing a run records can run here.
// Errors are counted into #js-errors, which the browser test reads.
"use strict";
(function () {
  var POLL_MS = 1000;
  // matplotlib's palette, as report.html's charts use it.
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
  var STATUS_COLOURS = {"2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728",
                        "no answer": "#7f7f7f", "errors": "#000000"};
  var charts = {};
  var errors = 0;
  var polls = 0;
  var finished = false;

  function countError() {
    errors += 1;
    text("js-errors", String(errors));
  }
  window.addEventListener("error", countError);
  window.addEventListener("unhandledrejection", countError);

  function el(id) { return document.getElementById(id); }
  function text(id, value) { el(id).textContent = value === null || value === undefined ? "-" : String(value); }
  function num(value, digits) { return value === null || value === undefined ? "-" : Number(value).toFixed(digits); }

  function rows(id, data) {
    var body = el(id);
    while (body.firstChild) { body.removeChild(body.firstChild); }
    data.forEach(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (cell) {
        var td = document.createElement("td");
        if (cell !== null && typeof cell === "object") {
          var span = document.createElement("span");
          span.className = "badge " + (cell.ok ? "pass" : "fail");
          span.textContent = cell.text;
          td.appendChild(span);
        } else {
          td.textContent = cell === null || cell === undefined ? "-" : String(cell);
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function chart(id, labels, colours, xs, ys, opts) {
    // One uPlot per figure, made again when its series change (an operation first seen).
    var key = labels.join("|");
    var data = [xs].concat(ys);
    var width = Math.max(320, el(id).clientWidth || 560);
    if (!charts[id] || charts[id].key !== key) {
      if (charts[id]) { charts[id].plot.destroy(); }
      var series = [{label: opts.x || "s"}].concat(labels.map(function (label, i) {
        // spanGaps: a latency line goes on over seconds without requests (no value, not 0).
        var s = {label: label, stroke: colours[i % colours.length], width: 1.5, spanGaps: !!opts.spanGaps,
                 points: {show: !!opts.spanGaps, size: 3}};
        if (opts.points) { s.paths = function () { return null; }; s.points = {show: true, size: 7, fill: colours[i % colours.length]}; }
        return s;
      }));
      var plot = new uPlot({width: width, height: 220, series: series,
                            scales: {x: {time: false}}, axes: [{label: opts.x || "seconds into the run"}, {label: opts.y}]},
                           data, el(id));
      charts[id] = {key: key, plot: plot};
    } else {
      charts[id].plot.setData(data);
    }
  }

  function opColours(ops) { return ops.map(function (op, i) { return COLOURS[i % COLOURS.length]; }); }

  function show(state) {
    polls += 1;
    text("polls", String(polls));
    text("updated", new Date().toLocaleTimeString());
    text("connection", "");
    finished = state.state === "ended";
    var header = el("verdict");
    if (state.state === "waiting") { header.className = "verdict waiting"; text("line", "waiting for the run to start"); return; }
    text("profile", state.profile);
    text("elapsed", num(state.elapsed_s, 0));
    text("planned", num(state.planned_s, 0));
    text("run-dir", state.run_dir);
    var runs = state.runs || {};
    text("requests", runs.requests);
    text("runs-finished", runs.finished);
    text("runs-in-flight", runs.in_flight);
    text("runs-failed", runs.failed);
    text("runs-planned", runs.planned);
    var series = state.series;
    text("errors", series.errors.reduce(function (a, b) { return a + b; }, 0));
    if (state.verdict) {
      header.className = "verdict " + state.verdict;
      text("line", state.verdict_line + (state.aborted ? " [aborted: " + state.aborted + "]" : ""));
    } else if (state.state === "ended") {
      header.className = "verdict running";
      text("line", "ended: writing the report");
    } else {
      header.className = "verdict running";
      text("line", "running: " + num(state.elapsed_s, 0) + " of " + num(state.planned_s, 0) + " s");
    }
    var link = el("report-link");
    if (!state.report) { while (link.firstChild) { link.removeChild(link.firstChild); } }
    if (state.report && !link.firstChild) {
      var a = document.createElement("a");
      a.href = "/report.html";
      a.id = "report";
      a.textContent = "report.html (served while pipstorm runs; the file is in the results folder)";
      link.appendChild(a);
    }
    rows("threshold-rows", (state.thresholds || []).map(function (t) {
      return [t.key, t.description, t.limit, t.measured, {ok: t.passed, text: t.passed ? "passing" : "failing"}];
    }));
    var gen = state.generator || {};
    text("saturated", gen.saturated === null || gen.saturated === undefined ? "not known yet" : gen.saturated ? "YES" : "no");
    text("saturation-reason", gen.reason || "");
    el("generator").className = "generator" + (gen.saturated ? " saturated" : "");
    var ops = series.ops;
    chart("chart-rps", ops, opColours(ops), series.t, ops.map(function (op) { return series.rps[op]; }), {y: "requests/s"});
    ["p50", "p95", "p99"].forEach(function (q) {
      chart("chart-" + q, ops, opColours(ops), series.t, ops.map(function (op) { return series[q][op]; }), {y: q + " ms", spanGaps: true});
    });
    var classes = Object.keys(series.status);
    var statusLabels = classes.concat(["errors"]);
    chart("chart-status", statusLabels, statusLabels.map(function (c) { return STATUS_COLOURS[c] || "#333"; }),
          series.t, classes.map(function (c) { return series.status[c]; }).concat([series.errors]), {y: "requests per bin"});
    var byShard = state.cpu_by_shard || {t: [], shards: [], cpu: []};
    if (byShard.shards.length) {
      // A sharded run: each generator's own CPU (their samples interleaved would mean nothing).
      chart("chart-cpu", byShard.shards.map(function (i) { return "shard " + i + " host CPU %"; }), COLOURS,
            byShard.t, byShard.cpu, {y: "%", spanGaps: true});
      text("cpu-caption", "Each shard's generator host CPU % (all cores), per bin.");
    } else {
      var host = state.host;
      chart("chart-cpu", ["host CPU %", "clients CPU %"], ["#d62728", "#9467bd"], host.t, [host.cpu, host.clients_cpu], {y: "%"});
    }
    showShards(state.shards || [], state.shard_generators || []);
    var bursts = (state.onset && state.onset.bursts) || [];
    chart("chart-onset", ["p50", "p95", "max"], ["#2ca02c", "#ff7f0e", "#d62728"],
          bursts.map(function (b) { return b.offset_s; }),
          ["p50", "p95", "max"].map(function (k) { return bursts.map(function (b) { return b[k]; }); }),
          {x: "burst tick (s into the run)", y: "onset s", points: true});
    var codes = state.status_counts || {};
    rows("status-rows", Object.keys(codes).sort().map(function (code) { return [code, codes[code]]; }));
    var failure = el("target-failure");
    while (failure.firstChild) { failure.removeChild(failure.firstChild); }
    (state.target_failure || []).forEach(function (line) {
      var li = document.createElement("li");
      li.textContent = line;
      failure.appendChild(li);
    });
    rows("target-rows", state.target_counters || []);
    var tgt = state.target_series || {t: [], cpu_percent: [], throttled_percent: [], memory_mb: []};
    chart("chart-target", ["CPU %", "throttled %", "memory MB"], ["#d62728", "#ff7f0e", "#1f77b4"],
          tgt.t, [tgt.cpu_percent, tgt.throttled_percent, tgt.memory_mb], {y: "% / MB"});
    var cw = state.cloudwatch;
    text("target-note", (state.target_counters || []).length ? "The target's latest cgroup counters (--sizing)." :
         cw ? "No cgroup counters (they come with --sizing); the stack's CloudWatch series are below." :
         "No target counters during the run (cgroup counters come with --sizing; an AWS stack's CloudWatch series are fetched once the load has ended).");
    showCloudWatch(cw);
  }

  function showShards(shards, generators) {
    el("shards").hidden = !shards.length;
    var checks = {};
    generators.forEach(function (g) { checks[g.index] = g; });
    rows("shard-rows", shards.map(function (s) {
      var g = checks[s.index] || {};
      var saturated = g.saturated === null || g.saturated === undefined ? "not known yet" :
                      g.saturated ? {ok: false, text: "YES" + (g.reason ? ": " + g.reason : "")} : "no";
      return [s.index, s.status, s.host, num(s.clock_offset_ms, 2), s.planned, s.finished, s.in_flight, s.failed,
              num(s.cpu_percent, 0), num(g.cpu_p95, 0), saturated];
    }));
  }

  function showCloudWatch(cw) {
    el("cloudwatch").hidden = !cw;
    if (!cw) { return; }
    if (cw.chart) {
      chart("chart-cloudwatch", cw.chart.labels, COLOURS, cw.chart.t, cw.chart.values, {y: "%", spanGaps: true});
    }
    rows("cloudwatch-rows", cw.rows || []);
    var missing = el("cloudwatch-missing");
    while (missing.firstChild) { missing.removeChild(missing.firstChild); }
    (cw.missing || []).forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = item[0] + ": " + item[1];
      missing.appendChild(li);
    });
  }

  function poll() {
    fetch("/state.json", {cache: "no-store"}).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (state) {
      try { show(state); } catch (err) { countError(); }
    }, function () {
      // The server is gone (the run ended and pipstorm exited) or not up yet: not a page error.
      text("connection", finished ? "pipstorm has stopped serving this page." : "not connected, retrying.");
    }).then(function () {
      setTimeout(poll, POLL_MS);  // on after the end too: a lab's next run follows
    });
  }
  poll();
})();
