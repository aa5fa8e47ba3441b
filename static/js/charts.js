/* Draws the dashboard's charts with uPlot from the JSON specs the server embeds
 * (dashboard/charts.py): <div class="chart" data-chart="ID"> reads <script id="ID">. */
(function () {
  "use strict";
  if (typeof uPlot === "undefined") { return; }

  var formats = {
    price: function (v) { return v.toFixed(2); },
    dollars: function (v) {
      var sign = v < 0 ? "-" : "";
      return sign + "$" + Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    },
    pct: function (v) { return (v * 100).toFixed(Math.abs(v) < 0.1 ? 1 : 0) + "%"; },
    num: function (v) { return v.toLocaleString("en-US", { maximumFractionDigits: 4 }); }
  };

  function formatter(name) {
    var f = formats[name] || formats.num;
    return function (v) { return v === null || v === undefined ? "—" : f(v); };
  }

  function number(v) { return v === null || v === undefined ? null : Number(v); }

  function alpha(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + a + ")";
  }

  function seriesOptions(s, fmt) {
    var o = { label: s.label, stroke: s.color, width: 1.6, spanGaps: true, value: function (u, v) { return fmt(v); } };
    if (s.dash) { o.dash = [5, 4]; }
    if (s.style === "step") { o.paths = uPlot.paths.stepped({ align: 1 }); }
    if (s.style === "area") { o.fill = alpha(s.color, 0.12); }
    if (s.style === "points") {
      o.paths = function () { return null; };
      o.points = { show: true, size: 8, fill: s.color, stroke: s.color };
    } else if (s.style === "linepoints") {
      o.points = { show: true, size: 6, fill: s.color };
    }
    return o;
  }

  // A y range that includes the given bounds (strings, or null for "fit the data") and pads
  // the side fitted to the data so a line never sits on the frame.
  function range(lo, hi) {
    return function (u, min, max) {
      if (min === null || max === null || !isFinite(min) || !isFinite(max)) {
        return [lo === null ? 0 : Number(lo), hi === null ? 1 : Number(hi)];
      }
      var a = lo === null ? min : Math.min(Number(lo), min);
      var b = hi === null ? max : Math.max(Number(hi), max);
      var pad = (b - a) * 0.08 || Math.abs(a) * 0.05 || 0.01;
      return [lo === null ? a - pad : a, hi === null ? b + pad : b];
    };
  }

  // The x scale; a single instant would otherwise be stretched over years: show an hour
  // either side of it.
  function xScale(spec, xs) {
    if (!spec.xTime) { return { time: false, auto: false, range: [0, 1] }; }
    if (xs.length === 1) { return { time: true, auto: false, range: [xs[0] - 3600, xs[0] + 3600] }; }
    return { time: true };
  }

  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    var yFmt = formatter(spec.yFormat);
    var xFmt = formatter(spec.xFormat);
    var data = [spec.x.map(Number)];
    var series = [spec.xTime ? {} : { label: "Forecast", value: function (u, v) { return xFmt(v); } }];
    spec.series.forEach(function (s) {
      data.push(s.values.map(number));
      series.push(seriesOptions(s, yFmt));
    });
    var axes = [
      spec.xTime ? {} : { values: function (u, splits) { return splits.map(xFmt); } },
      { size: 86, values: function (u, splits) { return splits.map(yFmt); } }
    ];
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: spec.height || 260,
      series: series,
      axes: axes,
      cursor: { points: { size: 7 } },
      scales: {
        x: xScale(spec, data[0]),
        y: { range: range(spec.yMin, spec.yMax) }
      }
    };
    var plot = new uPlot(opts, data, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(el.clientWidth, 280), height: opts.height });
    });
  }

  document.querySelectorAll("[data-chart]").forEach(draw);
})();
