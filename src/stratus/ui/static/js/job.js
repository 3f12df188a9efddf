/* Job page: polls the jobs API (through /ui/api) until the job ends, updating state, progress,
 * error and the link to its output table. #job gets data-state on every poll. */
(function () {
  "use strict";

  var root = document.getElementById("job");
  if (!root) return;
  var FINAL = ["succeeded", "failed", "cancelled"];
  var stateEl = document.getElementById("job-state");
  var bar = document.getElementById("job-progress");
  var percent = document.getElementById("job-percent");
  var output = document.getElementById("job-output");
  var error = document.getElementById("job-error");
  var rows = document.getElementById("job-rows");
  var delay = 500;

  function render(job) {
    var state = job.state || job.status || "unknown";
    root.dataset.state = state;
    if (stateEl.textContent !== state) stateEl.textContent = state;
    var p = typeof job.progress === "number" ? job.progress : (state === "succeeded" ? 1 : 0);
    if (p > 1) p = p / 100;
    bar.value = p;
    bar.textContent = Math.round(p * 100) + "%";
    percent.textContent = Math.round(p * 100) + "%";
    var table = job.output_table;
    if (state === "succeeded" && table && !output.querySelector("a")) {
      output.textContent = "";
      var a = document.createElement("a");
      a.href = root.dataset.tableHref.replace("__NAME__", encodeURIComponent(table));
      a.textContent = table;
      output.appendChild(a);
    }
    if (rows && job.rows_written !== null && job.rows_written !== undefined) {
      rows.textContent = String(job.rows_written);
    }
    error.textContent = job.error ? String(job.error) : "—";
    return FINAL.indexOf(state) >= 0;
  }

  function poll() {
    fetch(root.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.detail || body.title || resp.statusText);
          return body;
        });
      })
      .then(function (job) {
        if (!render(job)) {
          delay = Math.min(delay * 1.5, 5000);
          setTimeout(poll, delay);
        } else {
          root.dataset.done = "true";
        }
      })
      .catch(function (err) {
        error.textContent = "Could not read the job: " + err.message;
        setTimeout(poll, 5000);
      });
  }

  if (FINAL.indexOf(root.dataset.state) >= 0) {
    root.dataset.done = "true";
  } else {
    poll();
  }
})();
