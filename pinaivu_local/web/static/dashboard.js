// The dashboard: keys with usage, create (shown once), revoke, rotate, edit; the usage charts (charts.js).
"use strict";

let editing = null;

function csv(text) { return text.split(",").map(s => s.trim()).filter(Boolean); }
function numberOrNull(text) { return text.trim() === "" ? null : Number(text); }

async function refresh() {
  const error = document.getElementById("error");
  error.replaceChildren();
  try {
    const [keys, usage] = await Promise.all([api("GET", "/admin/keys"), api("GET", "/admin/usage?hours=24")]);
    renderKeys(keys.data, usage.keys);
    renderUsageCharts(usage.per_hour);
  } catch (e) { showError(error, e); }
}

function renderKeys(keys, usage) {
  const body = document.querySelector("#keys tbody");
  body.replaceChildren(...keys.map(k => {
    const used = usage[k.id] || { requests: 0, tokens: 0 };
    const actions = el("td", {});
    if (k.state === "active") {
      actions.append(
        el("button", { class: "secondary", "data-action": "edit", onclick: () => startEdit(k) }, "Edit"), " ",
        el("button", { class: "secondary", "data-action": "rotate", onclick: () => act("POST", k, "/rotate") }, "Rotate"), " ",
        el("button", { class: "danger", "data-action": "revoke", onclick: () => act("DELETE", k, "") }, "Revoke"));
    }
    return el("tr", { "data-key-id": k.id, "data-name": k.name },
      el("td", {}, k.name + (k.admin ? " (admin)" : "")), el("td", { class: "mono" }, k.prefix),
      el("td", { class: k.state === "active" ? "ok" : "bad" }, k.state),
      el("td", {}, k.models.length ? k.models.join(", ") : "all"),
      el("td", {}, k.rpm ?? "default"), el("td", {}, k.tpm ?? "default"),
      el("td", { class: "requests-24h" }, String(used.requests)), el("td", {}, String(used.tokens)),
      el("td", {}, k.last_used_at ? k.last_used_at.replace("T", " ").slice(0, 19) : "never"), actions);
  }));
}

async function act(method, key, suffix) {
  if (method === "DELETE" && !confirm("Revoke " + key.name + "? Requests with it will get 401 at once.")) return;
  try {
    const result = await api(method, "/admin/keys/" + key.id + suffix);
    if (result.key) showCreated(result.key);
    await refresh();
  } catch (e) { showError(document.getElementById("error"), e); }
}

function showCreated(key) {
  document.getElementById("created-key").textContent = key;
  document.getElementById("created").classList.remove("hidden");
  document.getElementById("copy-status").textContent = "";
}

function startEdit(key) {
  editing = key;
  document.getElementById("edit-name").textContent = key.name;
  document.getElementById("edit-models").value = key.models.join(", ");
  document.getElementById("edit-rpm").value = key.rpm ?? "";
  document.getElementById("edit-tpm").value = key.tpm ?? "";
  document.getElementById("edit-section").classList.remove("hidden");
}

document.getElementById("create").addEventListener("submit", async event => {
  event.preventDefault();
  const body = { name: document.getElementById("new-name").value, admin: document.getElementById("new-admin").checked };
  const models = csv(document.getElementById("new-models").value);
  if (models.length) body.models = models;
  const rpm = numberOrNull(document.getElementById("new-rpm").value);
  const tpm = numberOrNull(document.getElementById("new-tpm").value);
  const expires = document.getElementById("new-expires").value.trim();
  if (rpm !== null) body.rpm = rpm;
  if (tpm !== null) body.tpm = tpm;
  if (expires) body.expires_in = expires;
  try {
    const created = await api("POST", "/admin/keys", body);
    showCreated(created.key);
    event.target.reset();
    await refresh();
  } catch (e) { showError(document.getElementById("error"), e); }
});

document.getElementById("copy-button").addEventListener("click", async () => {
  const key = document.getElementById("created-key").textContent;
  const status = document.getElementById("copy-status");
  try { await navigator.clipboard.writeText(key); status.textContent = "Copied."; }
  catch (e) {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("created-key"));
    getSelection().removeAllRanges(); getSelection().addRange(range);
    status.textContent = "Selected: press Ctrl+C / Cmd+C.";
  }
});

document.getElementById("edit").addEventListener("submit", async event => {
  event.preventDefault();
  const body = {
    models: csv(document.getElementById("edit-models").value),
    rpm: numberOrNull(document.getElementById("edit-rpm").value),
    tpm: numberOrNull(document.getElementById("edit-tpm").value),
  };
  try {
    await api("PATCH", "/admin/keys/" + editing.id, body);
    document.getElementById("edit-section").classList.add("hidden");
    await refresh();
  } catch (e) { showError(document.getElementById("error"), e); }
});
document.getElementById("cancel-edit").addEventListener("click", () => document.getElementById("edit-section").classList.add("hidden"));

wireSignIn(refresh);
