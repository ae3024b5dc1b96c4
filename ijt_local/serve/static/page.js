// ijt-local's side-by-side page: every pane streams its own /v1/chat/completions request at once.
// Model output only ever reaches the page through textContent (never innerHTML).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const panes = [];
let allowSpecs = false;

function apiHeaders() {
  const headers = { "content-type": "application/json" };
  const key = $("#api-key").value.trim();
  if (key) headers.authorization = "Bearer " + key;
  return headers;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- panes -------------------------------------------------------------------------------------

function makePane(model) {
  const root = $("#pane-template").content.firstElementChild.cloneNode(true);
  const pane = { root, messages: [], busy: false, lastBody: null };
  $(".model", root).value = model || "";
  const rules = $(".rules", root);
  const boxes = $(".rule-boxes", root);
  const showBoxes = () => { boxes.hidden = rules.value !== "custom"; };
  rules.addEventListener("change", showBoxes);
  showBoxes();
  $(".copy-curl", root).addEventListener("click", () => copyRequest(pane, "curl"));
  $(".copy-python", root).addEventListener("click", () => copyRequest(pane, "python"));
  return pane;
}

function layoutPanes(models) {
  const count = Number($("#pane-count").value);
  const host = $("#panes");
  while (panes.length < count) {
    const pane = makePane(models[panes.length % Math.max(models.length, 1)]);
    panes.push(pane);
    host.appendChild(pane.root);
  }
  while (panes.length > count) panes.pop().root.remove();
  host.style.setProperty("--panes", String(count));
}

function rulesChoice(pane) {
  const mode = $(".rules", pane.root).value;
  if (mode === "served") return undefined;
  if (mode === "off") return "off";
  const names = [...pane.root.querySelectorAll(".rule-boxes input:checked")].map((box) => box.value);
  return names.length ? names.join(",") : "off";
}

function requestBody(pane, messages) {
  const body = {
    model: $(".model", pane.root).value.trim(),
    messages,
    temperature: Number($("#temperature").value),
    max_tokens: Number($("#max-tokens").value),
    stream: true,
    stream_options: { include_usage: true },
    logprobs: true,
    top_logprobs: Number($("#top-k").value),
  };
  const rules = rulesChoice(pane);
  if (rules !== undefined) body.ijt_rules = rules;
  const schema = $("#json-schema").value.trim();
  if (schema) {
    let parsed;
    try {
      parsed = JSON.parse(schema);
    } catch (error) {
      throw new Error("the JSON schema is not valid JSON (" + error.message + ")");
    }
    body.response_format = { type: "json_schema", json_schema: { name: "page", strict: true, schema: parsed } };
  }
  return body;
}

function serverTimings(timings) {
  // the server's own account (llama.cpp's `timings`): its prefill, then its decode steps
  if (!timings || timings.prompt_ms === undefined) return "";
  const rate = timings.predicted_per_second ? `, ${timings.predicted_per_second.toFixed(1)} tok/s` : "";
  return ` [server: prompt ${Math.round(timings.prompt_ms)} ms, decode ${Math.round(timings.predicted_ms)} ms${rate}]`;
}

// ---- the token view ----------------------------------------------------------------------------

// A reply's text arrives as content deltas; its tokens (with their bytes) as logprobs entries. Each
// character of the text is put in the span of the token whose bytes it starts in, so the spans hold
// exactly the reply's text (a stop string or role tag cuts the tokens' text, never the spans').
class TokenView {
  constructor(container) {
    this.container = container;
    this.tokens = [];  // {product, base} per token
    this.ends = [];  // cumulative byte end of each token
    this.spans = [];
    this.bytes = 0;  // bytes of text placed so far
    this.current = 0;  // the token the next character starts in
    this.encoder = new TextEncoder();
  }

  addTokens(product, base) {
    product.forEach((entry, i) => {
      const end = (this.ends.length ? this.ends[this.ends.length - 1] : 0) + entry.bytes.length;
      this.tokens.push({ product: entry, base: base ? base[i] : null });
      this.ends.push(end);
    });
  }

  addText(text) {
    for (const character of text) {
      while (this.current < this.ends.length - 1 && this.ends[this.current] <= this.bytes) this.current++;
      this.spanFor(this.current).textContent += character;
      this.bytes += this.encoder.encode(character).length;
    }
  }

  spanFor(index) {
    while (this.spans.length <= index) {
      const n = this.spans.length;
      const span = element("span");
      span.dataset.token = String(n);
      const token = this.tokens[n];
      if (token && token.base && token.base.changed) span.className = "changed";
      this.spans.push(span);
      this.container.appendChild(span);
    }
    return this.spans[index];
  }

  get changedCount() {
    return this.spans.filter((span) => span.classList.contains("changed")).length;
  }
}

function percent(logprob) {
  return (100 * Math.exp(logprob)).toFixed(logprob > -4.6 ? 1 : 3) + "%";
}

function showTooltip(view, span, event) {
  const token = view.tokens[Number(span.dataset.token)];
  if (!token) return;
  const tip = $("#tooltip");
  tip.replaceChildren();
  const { product, base } = token;
  const head = base
    ? `chosen ${JSON.stringify(product.token)}: product ${percent(product.logprob)}, base ${percent(base.logprob)}, ` +
      `rule score ${base.rule_score >= 0 ? "+" : ""}${base.rule_score.toFixed(2)}` + (base.changed ? " (rules changed the choice)" : "")
    : `chosen ${JSON.stringify(product.token)}: ${percent(product.logprob)} (no rules ran)`;
  tip.appendChild(element("div", "", head));
  const table = element("table");
  const header = element("tr");
  header.append(element("th", "", "product"), element("th", "", "p"));
  if (base) header.append(element("th", "", "base"), element("th", "", "p"));
  table.appendChild(header);
  const rows = Math.max(product.top_logprobs.length, base ? base.top_logprobs.length : 0);
  for (let i = 0; i < rows; i++) {
    const row = element("tr");
    for (const list of base ? [product.top_logprobs, base.top_logprobs] : [product.top_logprobs]) {
      const entry = list[i];
      const name = element("td", entry && entry.token === product.token ? "chosen" : "", entry ? JSON.stringify(entry.token) : "");
      row.append(name, element("td", "", entry ? percent(entry.logprob) : ""));
    }
    table.appendChild(row);
  }
  tip.appendChild(table);
  tip.hidden = false;
  tip.style.left = Math.min(event.clientX + 12, window.innerWidth - 340) + "px";
  tip.style.top = (event.clientY + 16) + "px";
}

// ---- streaming ---------------------------------------------------------------------------------

async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

async function runPane(pane, instruction) {
  const conversation = $(".conversation", pane.root);
  const status = $(".status", pane.root);
  const messages = [...pane.messages, { role: "user", content: instruction }];
  let body;
  try {
    body = requestBody(pane, messages);
  } catch (error) {
    status.className = "status error";
    status.textContent = "error: " + error.message;
    return;
  }
  pane.lastBody = body;
  conversation.appendChild(element("div", "turn user", instruction));
  const reply = element("div", "turn assistant");
  conversation.appendChild(reply);
  const view = new TokenView(reply);
  pane.view = view;
  reply.addEventListener("mouseover", (event) => {
    if (event.target.dataset && event.target.dataset.token !== undefined) showTooltip(view, event.target, event);
  });
  reply.addEventListener("mouseout", () => { $("#tooltip").hidden = true; });
  pane.root.dataset.state = "running";
  status.className = "status";
  status.textContent = "waiting…";
  const started = performance.now();
  let first = null, text = "", finish = null, usage = null, timings = null, note = null;
  try {
    const response = await fetch("/v1/chat/completions", { method: "POST", headers: apiHeaders(), body: JSON.stringify(body) });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      throw new Error((error.error && error.error.message) || `HTTP ${response.status}`);
    }
    for await (const chunk of serverEvents(response)) {
      if (chunk.usage) usage = chunk.usage;
      if (chunk.timings) timings = chunk.timings;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      if (choice.ijt_note) note = choice.ijt_note;
      if (choice.logprobs) view.addTokens(choice.logprobs.content, choice.ijt_base_logprobs ? choice.ijt_base_logprobs.content : null);
      const delta = (choice.delta && choice.delta.content) || "";
      if (delta) {
        if (first === null) first = performance.now();
        view.addText(delta);
        text += delta;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      const tokens = view.tokens.length;
      const seconds = first === null ? 0 : (performance.now() - first) / 1000;
      status.textContent = `${tokens} tokens` + (seconds > 0 ? `, ${(tokens / seconds).toFixed(1)} tok/s` : "");
    }
    const tokens = usage ? usage.completion_tokens : view.tokens.length;
    const seconds = (performance.now() - (first === null ? started : first)) / 1000;  // decoding, after the first token
    const ttft = first === null ? "" : `, first token ${((first - started) / 1000).toFixed(2)} s`;
    status.textContent = `${tokens} tokens, ${(tokens / Math.max(seconds, 1e-3)).toFixed(1)} tok/s${ttft}, ` +
      `finish: ${finish}` + (view.tokens.some((t) => t.base) ? `, rules changed ${view.changedCount}` : "") +
      serverTimings(timings) + (note ? ` (${note})` : "");
    pane.messages = [...messages, { role: "assistant", content: text }];
    pane.root.dataset.finish = finish || "";
  } catch (error) {
    status.className = "status error";
    status.textContent = "error: " + error.message;
    pane.root.dataset.finish = "error";
  }
  pane.root.dataset.state = "done";
}

async function sendAll(event) {
  event.preventDefault();
  const instruction = $("#instruction").value;
  if (!instruction.trim()) return;
  $("#send").disabled = true;
  $("#instruction").value = "";
  await Promise.all(panes.map((pane) => runPane(pane, instruction)));
  $("#send").disabled = false;
}

function newConversation() {
  for (const pane of panes) {
    pane.messages = [];
    $(".conversation", pane.root).replaceChildren();
    $(".status", pane.root).textContent = "idle";
    delete pane.root.dataset.state;
  }
}

// ---- copy a pane's request ---------------------------------------------------------------------

function copyRequest(pane, kind) {
  const body = pane.lastBody || requestBody(pane, [...pane.messages, { role: "user", content: $("#instruction").value || "..." }]);
  const base = location.origin;
  const key = $("#api-key").value.trim();
  let text;
  if (kind === "curl") {
    const json = JSON.stringify(body).replace(/'/g, "'\\''");
    text = `curl -sN ${base}/v1/chat/completions -H 'content-type: application/json'` +
      (key ? ` -H 'authorization: Bearer ${key.replace(/'/g, "")}'` : "") + ` -d '${json}'`;
  } else {
    const extra = {};
    const standard = ["model", "messages", "temperature", "max_tokens", "stream", "stream_options", "logprobs", "top_logprobs"];
    for (const [name, value] of Object.entries(body)) if (!standard.includes(name)) extra[name] = value;
    const py = (value) => JSON.stringify(value, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
    text = [
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url="${base}/v1", api_key=${JSON.stringify(key || "unused")})`,
      "stream = client.chat.completions.create(",
      `    model=${JSON.stringify(body.model)},`,
      `    messages=${py(body.messages)},`,
      `    temperature=${body.temperature}, max_tokens=${body.max_tokens}, stream=True,`,
      `    logprobs=True, top_logprobs=${body.top_logprobs},`,
      Object.keys(extra).length ? `    extra_body=${py(extra)},` : null,
      ")",
      "for chunk in stream:",
      "    print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)",
    ].filter((line) => line !== null).join("\n");
  }
  const shown = $(".copied", pane.root);
  shown.textContent = text;
  shown.hidden = false;
  if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
}

// ---- start -------------------------------------------------------------------------------------

async function loadModels() {
  let models = [];
  try {
    const response = await fetch("/v1/models", { headers: apiHeaders() });
    const listing = await response.json();
    if (!response.ok) throw new Error((listing.error && listing.error.message) || `HTTP ${response.status}`);
    models = listing.data.map((model) => model.id);
    allowSpecs = Boolean(listing.ijt_allow_specs);
    const list = $("#served-models");
    list.replaceChildren(...models.map((id) => { const option = element("option"); option.value = id; return option; }));
    $("#server-note").textContent = "served: " + models.join(", ") + (allowSpecs ? " (any spec allowed, e.g. default+poe:eos,uniform)" : "");
    $("#server-note").className = "hint";
  } catch (error) {
    $("#server-note").textContent = "cannot list models: " + error.message;
    $("#server-note").className = "hint error";
  }
  return models;
}

document.addEventListener("DOMContentLoaded", async () => {
  const models = await loadModels();
  layoutPanes(models);
  $("#pane-count").addEventListener("change", () => layoutPanes(models));
  $("#api-key").addEventListener("change", loadModels);
  $("#ask").addEventListener("submit", sendAll);
  $("#new-conversation").addEventListener("click", newConversation);
  $("#instruction").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#ask").requestSubmit();
  });
  document.body.dataset.ready = "true";
});
