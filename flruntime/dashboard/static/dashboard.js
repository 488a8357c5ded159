// flruntime dashboard: polls the server's JSON endpoints every 2 s and draws them (plotly.js, served locally).
// Text from the server (names, logs) is only ever set as textContent, never parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const body = document.body;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  // ---- small helpers ------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "className") node.className = value;
      else if (key.startsWith("data-")) node.dataset[key.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m ${r}s` : m ? `${m}m ${r}s` : `${r}s`;
  }

  function clock(epoch) {
    return epoch ? new Date(epoch * 1000).toLocaleString() : "—";
  }

  function number(value, digits, unit) {
    return typeof value === "number" ? `${value.toFixed(digits)}${unit || ""}` : "—";
  }

  function message(text, isError) {
    const node = document.getElementById("message");
    node.textContent = "";
    if (text instanceof Node) node.append(text);
    else node.textContent = text;
    node.className = isError ? "message error" : "message";
    node.hidden = !text;
  }

  class LoggedOut extends Error {}

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) throw new LoggedOut();
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  async function post(url) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
      body: "{}",
    });
    let reply = {};
    try {
      reply = await response.json();
    } catch (e) {
      reply = { error: `${response.status} ${response.statusText}` };
    }
    return { status: response.status, reply };
  }

  function poll(update) {
    let polls = 0;
    async function tick() {
      try {
        await update();
        polls += 1;
        body.dataset.polls = String(polls);
        document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (err) {
        if (err instanceof LoggedOut) {
          window.location.reload(); // the server answers with the login page
          return;
        }
        document.getElementById("updated").textContent = `update failed: ${err.message}`;
      }
      window.setTimeout(tick, POLL_MS);
    }
    tick();
  }

  // ---- the overview: sites and jobs -------------------------------------------------------------------------

  function siteRow(site) {
    const st = site.stats || {};
    const status = site.online ? "online" : "offline";
    const memory = st.rss_mib !== undefined ? `${number(st.rss_mib, 0, " MiB")} (${number(st.mem_percent, 1, "%")})` : "—";
    const gpu =
      st.gpu_util_percent !== undefined || st.gpu_mem_mib !== undefined
        ? `${number(st.gpu_util_percent, 0, "%")} · ${number(st.gpu_mem_mib, 0, " MiB")}`
        : "—";
    const sampled = site.stats ? `sampled ${clock(st.time)} during job ${st.job_id}` : "no sample yet (sites sample while they run a job)";
    const heartbeat = site.last_heartbeat ? `${clock(site.last_heartbeat)} (${number(site.last_seen_s, 1, " s")} ago)` : "never";
    return el(
      "tr",
      { "data-site": site.name, className: status },
      el("td", {}, site.name),
      el("td", {}, site.org),
      el("td", { className: "status" }, el("span", { className: `badge ${status}` }, status)),
      el("td", { className: "heartbeat" }, heartbeat),
      el("td", {}, site.version || "—"),
      el("td", {}, ...site.jobs.map((j) => el("a", { href: `/jobs/${encodeURIComponent(j)}` }, j.slice(0, 8) + " "))),
      el("td", { className: "cpu", title: sampled }, number(st.cpu_percent, 1, "%")),
      el("td", { className: "mem", title: sampled }, memory),
      el("td", { className: "gpu", title: sampled }, gpu)
    );
  }

  function jobRow(job) {
    const href = `/jobs/${encodeURIComponent(job.job_id)}`;
    return el(
      "tr",
      { "data-job-id": job.job_id },
      el("td", {}, el("a", { href }, job.job_id.slice(0, 8))),
      el("td", {}, job.name),
      el("td", { className: "status" }, el("span", { className: `badge ${job.status.toLowerCase().replace(/[^a-z]+/g, "-")}` }, job.status)),
      el("td", { className: "rounds" }, String(job.rounds)),
      el("td", {}, clock(job.submit_time)),
      el("td", { className: "duration" }, duration(job.duration)),
      el("td", {}, job.submitter),
      el("td", {}, job.sites.join(", "))
    );
  }

  function overview() {
    poll(async () => {
      const data = await getJSON("/api/overview");
      document.querySelector("#sites tbody").replaceChildren(...data.sites.map(siteRow));
      document.querySelector("#jobs tbody").replaceChildren(...data.jobs.map(jobRow));
      document.getElementById("uptime").textContent = `server up ${duration(data.server.uptime_s)}`;
    });
  }

  // ---- a job ------------------------------------------------------------------------------------------------

  const drawn = new Map(); // plot div -> the JSON it was drawn from

  function plotInto(container, cls, key, value, data, layout) {
    let div = Array.from(container.children).find((d) => d.dataset.key === key);
    if (!div) {
      div = el("div", { className: `plot ${cls}`, "data-key": key });
      div.dataset[cls === "curve" ? "tag" : "metric"] = value;
      container.append(div);
    }
    const json = JSON.stringify(data);
    if (drawn.get(div) === json) return;
    drawn.set(div, json);
    window.Plotly.react(div, data, layout, PLOT_CONFIG);
  }

  function drawCurves(curves) {
    const container = document.getElementById("curves");
    document.getElementById("curves-empty").hidden = curves.length > 0;
    for (const curve of curves) {
      const traces = curve.traces.map((t) => ({ type: "scatter", mode: "lines+markers", name: t.site, x: t.x, y: t.y }));
      plotInto(container, "curve", `curve:${curve.tag}`, curve.tag, traces, {
        title: { text: curve.tag },
        xaxis: { title: { text: "step" } },
        yaxis: { title: { text: curve.tag } },
        margin: { t: 40, r: 10, b: 40, l: 60 },
        height: 300,
        showlegend: true,
      });
    }
  }

  function drawCrossVal(matrices) {
    const container = document.getElementById("crossval");
    document.getElementById("crossval-empty").hidden = matrices.length > 0;
    for (const m of matrices) {
      const trace = {
        type: "heatmap",
        z: m.z,
        x: m.models,
        y: m.sites,
        colorscale: "Viridis",
        texttemplate: "%{z:.3f}",
        hovertemplate: "data of %{y}<br>model %{x}<br>" + m.metric + " %{z}<extra></extra>",
      };
      plotInto(container, "heatmap", `heatmap:${m.metric}`, m.metric, [trace], {
        title: { text: `${m.metric}: each site (row) validating each model (column)` },
        xaxis: { title: { text: "model" }, type: "category", automargin: true },
        yaxis: { title: { text: "site's data" }, type: "category", automargin: true },
        margin: { t: 40, r: 10, b: 40, l: 60 },
        height: 360,
      });
    }
  }

  function drawLogs(logs) {
    const container = document.getElementById("logs");
    for (const log of logs) {
      let pre = container.querySelector(`pre[data-site="${CSS.escape(log.site)}"]`);
      if (!pre) {
        pre = el("pre", { className: "log", "data-site": log.site });
        container.append(el("details", { open: "" }, el("summary", {}, log.site), pre));
      }
      if (pre.textContent === log.text) continue;
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = log.text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
  }

  function drawModels(jobId, models) {
    const span = document.getElementById("models");
    if (!span) return;
    const links = models.map((m) =>
      el("a", { className: "model", href: `/jobs/${encodeURIComponent(jobId)}/models/${m.split("/").map(encodeURIComponent).join("/")}` }, m)
    );
    const names = links.map((a) => a.textContent).join("|");
    if (span.dataset.names === names) return;
    span.dataset.names = names;
    span.replaceChildren(...(links.length ? ["· models: ", ...links.flatMap((a) => [a, " "])] : []));
  }

  async function act(jobId, verb) {
    if (verb === "abort" && !window.confirm(`Abort job ${jobId}?`)) return;
    const { status, reply } = await post(`/api/jobs/${encodeURIComponent(jobId)}/${verb}`);
    if (status !== 200) {
      message(`${verb} refused (${status}): ${reply.error}`, true);
      return;
    }
    if (verb === "clone") {
      const link = el("a", { id: "clone-link", href: `/jobs/${encodeURIComponent(reply.job_id)}` }, reply.job_id);
      message(el("span", {}, "Cloned as job ", link, "."), false);
    } else {
      message(`Abort requested for job ${jobId}.`, false);
    }
  }

  function job() {
    const jobId = body.dataset.jobId;
    const base = `/api/jobs/${encodeURIComponent(jobId)}`;
    const abortBtn = document.getElementById("abort-btn");
    const cloneBtn = document.getElementById("clone-btn");
    if (abortBtn) abortBtn.addEventListener("click", () => act(jobId, "abort"));
    if (cloneBtn) cloneBtn.addEventListener("click", () => act(jobId, "clone"));
    poll(async () => {
      const [info, metrics, crossval, logs] = await Promise.all([
        getJSON(base),
        getJSON(`${base}/metrics`),
        getJSON(`${base}/crossval`),
        getJSON(`${base}/logs`),
      ]);
      const rec = info.job;
      document.getElementById("job-status").textContent = rec.status;
      document.getElementById("job-rounds").textContent = String(rec.rounds);
      document.getElementById("job-duration").textContent = duration(rec.duration);
      document.getElementById("job-error").textContent = rec.error || "—";
      if (abortBtn) abortBtn.hidden = rec.finished;
      drawModels(jobId, info.models);
      drawCurves(metrics.curves);
      drawCrossVal(crossval.matrices);
      drawLogs(logs.logs);
    });
  }

  if (body.dataset.page === "overview") overview();
  else if (body.dataset.page === "job") job();
})();
