// The explorer: look a request up, verify it, list recent ones.
"use strict";

// The node a record names, as people say it: no node (no fleet) or a gateway's own engine is this box.
function nodeName(node) {
  return !node || node === "local" ? "this box" : node;
}

let current = null;

function recordView(record) {
  const rows = [
    ["request_id", record.request_id], ["time", record.created_at], ["key", record.key_name + " (" + record.key_id + ")"],
    ["model", record.model], ["model sha256", record.model_sha256 || "not yet computed"], ["node", nodeName(record.node)],
    ["status", String(record.status)], ["finish reason", record.finish_reason || "-"],
    ["tokens", record.usage.prompt_tokens + " in, " + record.usage.completion_tokens + " out"],
    ["queue", fmtMs(record.timings.queue_ms)], ["first token", fmtMs(record.timings.time_to_first_token_ms)],
    ["total", fmtMs(record.timings.total_ms)], ["tokens/s", record.timings.tokens_per_second ?? "-"],
    ["sampling", JSON.stringify(record.sampling)],
    ["input sha256", record.commitment.input_sha256], ["output sha256", record.commitment.output_sha256 || "-"],
  ];
  if (record.error) rows.push(["error", record.error]);
  const list = el("dl", { id: "record-fields" });
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", { class: "mono" }, value));
  return list;
}

function fmtMs(value) { return value === null || value === undefined ? "-" : Math.round(value) + " ms"; }

// The receipt: checked here with the browser's own Ed25519 (Web Crypto) against the node's published
// keys; where the browser has no Ed25519, the server checks it, and the page says so.
function receiptView(record) {
  const box = el("div", { id: "receipt" });
  if (!record.receipt) {
    box.append(el("p", { class: "muted" }, "No receipt: only completed requests are signed."));
    return box;
  }
  const doc = record.receipt.receipt;
  box.append(el("p", { id: "receipt-status", class: "muted" }, "Signed by node " + doc.node_id + " (key " + doc.key_id + "): checking…"));
  checkReceipt(record.receipt).then(([ok, how]) => {
    const status = document.getElementById("receipt-status");
    if (!status) return;
    const signer = "Signed by node " + doc.node_id + " (key " + doc.key_id + ")";
    if (ok === null) { status.className = "muted"; status.textContent = signer + ": " + how + "."; return; }
    status.className = ok ? "ok" : "bad";
    status.textContent = signer + ", signature " + (ok ? "valid" : "INVALID") + " (" + how + ").";
  });
  return box;
}

function canonicalBytes(doc) {  // sorted keys, no spaces, UTF-8: the receipt holds only strings, integers and null
  const sorted = Object.fromEntries(Object.keys(doc).sort().map(k => [k, doc[k]]));
  return new TextEncoder().encode(JSON.stringify(sorted));
}

function fromBase64(text) { return Uint8Array.from(atob(text), c => c.charCodeAt(0)); }

async function checkReceipt(signed) {
  let key = null;
  try {
    const node = await (await fetch("/v1/node")).json();
    if (node.node_id !== signed.receipt.node_id) {  // a node behind this gateway signed it, not this server
      return [null, "signed by a node behind this gateway: check it with its keys, " +
        "pinaivu-local receipts verify FILE --node <that node's URL>"];
    }
    const known = [node.current_key, ...node.retired_keys].find(k => k.key_id === signed.receipt.key_id);
    if (!known) return [false, "not a key of this node"];
    key = await crypto.subtle.importKey("raw", fromBase64(known.public_key), { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    key = null;  // no Ed25519 in this browser's Web Crypto (or no Web Crypto off https/localhost)
  }
  if (key) {
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, fromBase64(signed.signature),
      canonicalBytes(signed.receipt));
    return [ok, "checked in this browser with Web Crypto"];
  }
  try {
    const result = await api("POST", "/v1/receipts/verify", signed);
    return [result.valid, "checked by the server: this browser cannot check Ed25519 itself"];
  } catch (error) { return [false, error.message]; }
}

async function lookUp(requestId) {
  const target = document.getElementById("record");
  document.getElementById("request-id").value = requestId;
  try {
    current = await api("GET", "/v1/requests/" + encodeURIComponent(requestId.trim()));
    target.replaceChildren(recordView(current), receiptView(current));
    if (current.content) {
      document.getElementById("verify-input").value = typeof current.content.input === "string"
        ? current.content.input : JSON.stringify(current.content.input, null, 2);
      document.getElementById("verify-output").value = current.content.output;
    }
  } catch (error) { current = null; showError(target, error); }
}

async function verify() {
  const target = document.getElementById("verify-result");
  if (!current) { showError(target, new Error("Look a request up first.")); return; }
  const raw = document.getElementById("verify-input").value;
  const body = { output: document.getElementById("verify-output").value };
  if (current.kind === "chat") {
    try { body.messages = JSON.parse(raw); } catch (e) { showError(target, new Error("messages must be a JSON list")); return; }
  } else {
    try { const parsed = JSON.parse(raw); body.prompt = Array.isArray(parsed) ? parsed : raw; } catch (e) { body.prompt = raw; }
  }
  target.replaceChildren(el("p", { class: "muted" }, "Verifying…"));
  try {
    const result = await api("POST", "/v1/requests/" + current.request_id + "/verify", body);
    const lines = [
      el("p", { id: "verdict", class: result.verified ? "ok" : "bad" },
        result.verified ? "Verified: the input and output match the commitment." : "Not verified."),
      el("p", {}, "input " + (result.input_matches ? "matches" : "does not match") +
        ", output " + (result.output_matches ? "matches" : "does not match") + "."),
    ];
    if (result.replay) {
      lines.push(el("p", { id: "replay" }, !result.replay.performed ? "Replay: " + result.replay.reason
        : result.replay.reproduced ? "Replay: the model reproduced the output exactly."
        : "Replay: diverged at character " + result.replay.first_divergence + " (expected “" + result.replay.expected +
          "”, replayed “" + result.replay.replayed + "”)."));
    }
    target.replaceChildren(...lines);
  } catch (error) { showError(target, error); }
}

async function loadRecent() {
  const body = document.querySelector("#recent tbody");
  try {
    const page = await api("GET", "/v1/requests?limit=20");
    body.replaceChildren(...page.data.map(r => {
      const row = el("tr", { class: "clickable", onclick: () => lookUp(r.request_id) },
        el("td", {}, r.created_at.replace("T", " ").slice(0, 19)), el("td", { class: "mono" }, r.request_id),
        el("td", {}, r.model), el("td", {class: "node"}, nodeName(r.node)), el("td", {}, String(r.status)), el("td", {}, String(r.usage.total_tokens)),
        el("td", {}, fmtMs(r.timings.total_ms)));
      return row;
    }));
  } catch (error) { body.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "bad" }, error.message))); }
}

// /health needs no key: a gateway lists its nodes; a single box is one node, its models as they are.
async function loadNetwork() {
  const summary = document.getElementById("network-summary");
  const body = document.querySelector("#nodes tbody");
  let health;
  try {
    const response = await fetch("/health");
    health = await response.json();
  } catch (error) { showError(summary, error); return; }
  const nodes = health.nodes || [{
    name: "this box", state: health.status === "unavailable" ? "down" : "up", since: "", last_error: null,
    models: Object.fromEntries(health.models.filter(m => m.state === "ready")
      .map(m => [m.id, { running: m.running, slots: m.slots, queued: m.queued }])),
  }];
  summary.textContent = "Network " + health.status + ": " + nodes.filter(n => n.state === "up").length + " of " +
    nodes.length + " node" + (nodes.length === 1 ? "" : "s") + " up.";
  summary.className = health.status === "ok" ? "ok" : "bad";
  body.replaceChildren(...nodes.map(n => el("tr", { "data-node": n.name },
    el("td", {}, n.name), el("td", { class: n.state === "up" ? "ok" : "bad" }, n.state),
    el("td", {}, (n.since || "").replace("T", " ").slice(0, 19)),
    el("td", {}, Object.entries(n.models).map(([id, m]) => id + " " + m.running + "/" + m.slots + ", " + m.queued).join("; ") || "-"),
    el("td", {}, n.last_error || "-"))));
}

document.getElementById("lookup").addEventListener("submit", event => {
  event.preventDefault();
  lookUp(document.getElementById("request-id").value);
});
document.getElementById("verify-button").addEventListener("click", verify);
loadNetwork();
setInterval(loadNetwork, 5000);
wireSignIn(() => {
  loadRecent();
  const fromUrl = new URLSearchParams(location.search).get("request_id");
  if (fromUrl) lookUp(fromUrl);
});
