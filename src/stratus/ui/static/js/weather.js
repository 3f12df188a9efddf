/* Weather page: hourly and summary charts (uPlot) from the weather API, read through /ui/api.
 * Each chart's figure gets data-points (non-null values plotted, read back from uPlot's own
 * data) and data-series once drawn; #hourly gets data-rows (rows fetched) and data-ready. */
(function () {
  "use strict";

  var COLORS = ["#0b5cad", "#b3261e", "#2e7d32", "#6a1b9a", "#c05600", "#00695c", "#4e342e", "#37474f"];
  var MAX_ROWS = 200000;
  var charts = [];

  function epoch(text) {
    // naive ISO timestamps and dates are station-local: plotted as UTC so labels show them as is
    var iso = text.length === 10 ? text + "T00:00:00Z" : text.replace(/(Z|[+-]\d\d:\d\d)?$/, "Z");
    return Date.parse(iso) / 1000;
  }

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) {
            throw new Error(body.detail || body.title || resp.statusText);
          }
          return body;
        });
      }
    );
  }

  function fetchAll(src) {
    var rows = [];
    function page(url) {
      return fetchJson(url).then(function (body) {
        rows = rows.concat(body.data);
        if (body.next_cursor && rows.length < MAX_ROWS) {
          return page(src + "&cursor=" + encodeURIComponent(body.next_cursor));
        }
        return { rows: rows, truncated: Boolean(body.next_cursor) };
      });
    }
    return page(src);
  }

  function cityList(rows) {
    var seen = [];
    rows.forEach(function (r) {
      if (seen.indexOf(r.city_id) < 0) seen.push(r.city_id);
    });
    return seen.sort();
  }

  /* uPlot wants one x array and, per series, a y array aligned to it (null where missing). */
  function align(rows, cities, xKey, fields) {
    var xs = [];
    var at = new Map();
    rows.forEach(function (r) {
      var x = epoch(String(r[xKey]));
      if (!at.has(x)) {
        at.set(x, 0);
        xs.push(x);
      }
    });
    xs.sort(function (a, b) { return a - b; });
    xs.forEach(function (x, i) { at.set(x, i); });
    var out = {};
    fields.forEach(function (f) {
      out[f] = cities.map(function () { return new Array(xs.length).fill(null); });
    });
    rows.forEach(function (r) {
      var i = at.get(epoch(String(r[xKey])));
      var c = cities.indexOf(r.city_id);
      fields.forEach(function (f) {
        var v = r[f];
        if (v !== null && v !== undefined) out[f][c][i] = v;
      });
    });
    return { xs: xs, series: out };
  }

  function width(el) {
    return Math.max(320, Math.floor(el.clientWidth || 560) - 4);
  }

  function draw(figure, xs, ys, series, opts) {
    var plot = figure.querySelector(".plot");
    plot.textContent = "";
    var u = new uPlot(
      Object.assign(
        {
          width: width(plot),
          height: 230,
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
          scales: { x: { time: true } },
          series: [{ label: "time" }].concat(series),
          axes: [{}, { label: figure.dataset.unit || "" }],
          legend: { live: true },
        },
        opts || {}
      ),
      [xs].concat(ys),
      plot
    );
    charts.push(u);
    var points = 0;
    for (var s = 1; s < u.data.length; s++) {
      u.data[s].forEach(function (v) { if (v !== null && v !== undefined) points++; });
    }
    figure.dataset.points = String(points);
    figure.dataset.series = String(u.data.length - 1);
    figure.dataset.x = String(u.data[0].length);
    return u;
  }

  function fail(section, message) {
    section.setAttribute("aria-busy", "false");
    var status = section.querySelector(".status");
    if (status) {
      status.textContent = "Could not load the data: " + message;
      status.classList.add("alert", "error");
    }
    section.dataset.error = message;
  }

  function hourly(section) {
    var fields = section.dataset.fields.split(",");
    fetchAll(section.dataset.src)
      .then(function (result) {
        var rows = result.rows;
        var cities = cityList(rows);
        var data = align(rows, cities, "ts", fields);
        fields.forEach(function (f) {
          var figure = document.getElementById("chart-" + f);
          if (!figure) return;
          var series = cities.map(function (c, i) {
            var s = { label: c, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false };
            if (f === "precipitation") {
              s.fill = COLORS[i % COLORS.length] + "55";
              s.paths = uPlot.paths.bars({ size: [0.9, 8] });
            }
            return s;
          });
          draw(figure, data.xs, data.series[f], series);
        });
        section.dataset.rows = String(rows.length);
        section.dataset.cities = String(cities.length);
        section.setAttribute("aria-busy", "false");
        var status = section.querySelector(".status");
        status.textContent = rows.length
          ? rows.length + " hourly observations" + (result.truncated ? " (the first " + rows.length + " only)" : "") + "."
          : "No observations in this range.";
        section.dataset.ready = "true";
      })
      .catch(function (err) { fail(section, err.message); });
  }

  function summary(section) {
    fetchJson(section.dataset.src)
      .then(function (body) {
        var rows = body.data;
        var cities = cityList(rows);
        var data = align(rows, cities, "period", ["temp_min", "temp_mean", "temp_max", "precipitation_total"]);
        var tempSeries = [];
        var tempData = [];
        cities.forEach(function (c, i) {
          var color = COLORS[i % COLORS.length];
          tempSeries.push({ label: c + " max", stroke: color, width: 1, dash: [4, 4] });
          tempData.push(data.series.temp_max[i]);
          tempSeries.push({ label: c + " mean", stroke: color, width: 2 });
          tempData.push(data.series.temp_mean[i]);
          tempSeries.push({ label: c + " min", stroke: color, width: 1, dash: [2, 3] });
          tempData.push(data.series.temp_min[i]);
        });
        var temp = document.getElementById("chart-summary-temp");
        temp.dataset.unit = "°C";
        draw(temp, data.xs, tempData, tempSeries);
        var precip = document.getElementById("chart-summary-precip");
        precip.dataset.unit = "mm";
        draw(
          precip,
          data.xs,
          data.series.precipitation_total,
          cities.map(function (c, i) {
            var color = COLORS[i % COLORS.length];
            return { label: c, stroke: color, fill: color + "55", paths: uPlot.paths.bars({ size: [0.8, 40] }) };
          })
        );
        section.dataset.rows = String(rows.length);
        section.setAttribute("aria-busy", "false");
        section.dataset.ready = "true";
      })
      .catch(function (err) { fail(section, err.message); });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (u) {
        u.setSize({ width: width(u.root.parentNode), height: 230 });
      });
    }, 150);
  });

  var h = document.getElementById("hourly");
  if (h) hourly(h);
  var s = document.getElementById("summary-charts");
  if (s) summary(s);
})();
