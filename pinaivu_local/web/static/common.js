// Shared by the pages: the key lives only in this tab (sessionStorage), requests are same-origin.
"use strict";

const KEY_STORAGE = "pinaivu.key";

function storedKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

function signIn(key) { sessionStorage.setItem(KEY_STORAGE, key.trim()); }

function signOut() { sessionStorage.removeItem(KEY_STORAGE); }

async function api(method, path, body) {
  const options = { method, headers: { "Authorization": "Bearer " + storedKey() } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message
      : data && data.detail ? data.detail.map(d => d.loc.join(".") + ": " + d.msg).join("; ")
      : response.status + " " + response.statusText;
    throw new Error(message);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

function showError(target, error) {
  target.replaceChildren(el("p", { class: "bad", role: "alert" }, error.message || String(error)));
}

function wireSignIn(onSignedIn) {
  const form = document.getElementById("signin");
  const input = document.getElementById("key");
  const status = document.getElementById("signin-status");
  const render = () => {
    const key = storedKey();
    status.textContent = key ? "Signed in with " + key.slice(0, 13) + "…" : "Not signed in.";
    document.querySelectorAll(".needs-key").forEach(n => n.classList.toggle("hidden", !key));
  };
  form.addEventListener("submit", event => {
    event.preventDefault();
    signIn(input.value);
    input.value = "";
    render();
    onSignedIn();
  });
  document.getElementById("signout").addEventListener("click", () => { signOut(); render(); });
  render();
  if (storedKey()) onSignedIn();
}
