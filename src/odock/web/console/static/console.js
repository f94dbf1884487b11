// Odock console: progressive behaviour for server-rendered pages. No framework, no build step.
//
// Every change goes through the REST API: a <form data-api-form action="/api/..."> is sent as
// JSON with the session's CSRF token, and the API's field errors are shown next to their fields.
// Field names with dots nest ("pricing.input" -> {"pricing": {"input": ...}}); data-type on a
// field converts its value: int, number, bool, json, list (comma or newline separated), datetime
// (a datetime-local value sent as written, seconds added). Empty fields are left out unless they
// say data-empty="null". data-then says what follows success: "reload", a path (may name fields
// of the answer as {id} or {key.id}), or "event" (the page's own module listens for odock:done).
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
    }
    return "";
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-cookie"]');
    return cookie(meta ? meta.content : "odock_csrf");
  }

  // Call the API; resolves to {ok, status, body} (body: parsed JSON, or null).
  Odock.api = async function (method, url, body) {
    const headers = { "X-CSRF-Token": csrfToken(), Accept: "application/json" };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let parsed = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) parsed = await response.json();
    return { ok: response.ok, status: response.status, body: parsed };
  };
  Odock.csrfToken = csrfToken;

  class FieldError extends Error {
    constructor(field, message) { super(message); this.field = field; }
  }

  function convert(input, raw) {
    const type = input.dataset.type || "";
    if (type === "bool") return input.type === "checkbox" ? input.checked : raw === "true";
    if (raw === "" || raw === undefined) return undefined;
    if (type === "int") {
      if (!/^-?\d+$/.test(raw.trim())) throw new FieldError(input.name, "enter a whole number");
      return parseInt(raw, 10);
    }
    if (type === "number") {
      const value = Number(raw);
      if (Number.isNaN(value)) throw new FieldError(input.name, "enter a number");
      return value;
    }
    if (type === "json") {
      try { return JSON.parse(raw); } catch (e) { throw new FieldError(input.name, "not valid JSON: " + e.message); }
    }
    if (type === "list") return raw.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
    if (type === "datetime") return raw.length === 16 ? raw + ":00" : raw;
    return raw;
  }

  function assign(target, path, value) {
    const parts = path.split(".");
    let node = target;
    for (let i = 0; i < parts.length - 1; i++) {
      if (typeof node[parts[i]] !== "object" || node[parts[i]] === null) node[parts[i]] = {};
      node = node[parts[i]];
    }
    const last = parts[parts.length - 1];
    if (Array.isArray(node[last]) && Array.isArray(value)) node[last] = node[last].concat(value);
    else node[last] = value;
  }

  // The JSON body a form describes.
  Odock.formBody = function (form) {
    const body = {};
    for (const input of form.elements) {
      if (!input.name || input.disabled || input.dataset.omit !== undefined) continue;
      let value;
      if (input.type === "checkbox" && input.dataset.type !== "bool") {
        if (!input.checked) continue;
        value = [input.value]; // checkboxes sharing a name make a list
      } else if (input.type === "radio") {
        if (!input.checked) continue;
        value = convert(input, input.value);
      } else if (input.tagName === "SELECT" && input.multiple) {
        value = Array.from(input.selectedOptions).map((o) => o.value);
      } else {
        value = convert(input, input.value);
      }
      if (value === undefined) {
        if (input.dataset.empty === "null") assign(body, input.name, null);
        continue;
      }
      assign(body, input.name, value);
    }
    return body;
  };

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    const general = form.querySelector("[data-form-error]");
    if (general) { general.textContent = ""; general.hidden = true; }
  }

  // Show an API error in a form: each field's message beside it, the rest above the button.
  Odock.showErrors = function (form, error) {
    const general = form.querySelector("[data-form-error]");
    const leftover = [];
    const fields = (error && error.fields) || [];
    let first = null;
    for (const item of fields) {
      const slot = findSlot(form, item.field);
      if (slot) {
        slot.textContent = item.message;
        const input = form.querySelector('[name="' + CSS.escape(slot.dataset.errorFor) + '"]');
        if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
      } else {
        leftover.push(item.field + ": " + item.message);
      }
    }
    if (!fields.length && error && error.param) {
      const slot = findSlot(form, error.param);
      if (slot) { slot.textContent = error.message; }
      else leftover.push(error.message);
    } else if (!fields.length) {
      leftover.push((error && error.message) || "The request failed.");
    }
    if (general && leftover.length) { general.textContent = leftover.join(" · "); general.hidden = false; }
    else if (leftover.length) window.alert(leftover.join("\n"));
    if (first) first.focus();
  };

  function findSlot(form, field) {
    // The field itself, or the nearest enclosing name ("pricing.input" -> "pricing").
    let name = field;
    while (name) {
      const slot = form.querySelector('[data-error-for="' + CSS.escape(name) + '"]');
      if (slot) return slot;
      const cut = name.lastIndexOf(".");
      name = cut > 0 ? name.slice(0, cut) : "";
    }
    return null;
  }

  function fill(template, data) {
    return template.replace(/\{([\w.]+)\}/g, (_, path) => {
      let value = data;
      for (const part of path.split(".")) value = value == null ? undefined : value[part];
      return encodeURIComponent(value == null ? "" : String(value));
    });
  }

  function after(element, then, data) {
    element.dispatchEvent(new CustomEvent("odock:done", { bubbles: true, detail: data }));
    if (!then || then === "event") return;
    if (then === "reload") window.location.reload();
    else window.location.assign(fill(then, data || {}));
  }

  async function submit(form, event) {
    event.preventDefault();
    clearErrors(form);
    let body;
    try {
      body = Odock.formBody(form);
      if (form.dataset.prepare && Odock.prepare && Odock.prepare[form.dataset.prepare]) {
        body = await Odock.prepare[form.dataset.prepare](form, body);
      }
    } catch (error) {
      if (error instanceof FieldError) Odock.showErrors(form, { fields: [{ field: error.field, message: error.message }] });
      else Odock.showErrors(form, { message: String(error.message || error) });
      return;
    }
    const method = (form.dataset.method || form.getAttribute("method") || "post").toUpperCase();
    const button = form.querySelector('[type="submit"]');
    if (button) button.disabled = true;
    try {
      const answer = await Odock.api(method, form.getAttribute("action"), method === "GET" ? undefined : body);
      if (!answer.ok) {
        Odock.showErrors(form, answer.body && answer.body.error);
        return;
      }
      after(form, form.dataset.then, answer.body);
    } catch (error) {
      Odock.showErrors(form, { message: "Could not reach the server: " + error.message });
    } finally {
      if (button) button.disabled = false;
    }
  }

  async function press(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    button.disabled = true;
    try {
      const answer = await Odock.api(button.dataset.method || "POST", button.dataset.action, body);
      if (!answer.ok) {
        const error = answer.body && answer.body.error;
        const slot = button.closest("[data-action-scope]") || document;
        const general = slot.querySelector("[data-form-error]");
        const text = (error && error.message) || "The request failed (" + answer.status + ").";
        if (general) { general.textContent = text; general.hidden = false; } else window.alert(text);
        return;
      }
      after(button, button.dataset.then || "reload", answer.body);
    } finally {
      button.disabled = false;
    }
  }

  function copy(button) {
    const target = document.getElementById(button.dataset.copy);
    if (!target) return;
    const text = target.value !== undefined ? target.value : target.textContent;
    const done = () => { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, () => {});
    else {
      const range = document.createRange();
      range.selectNodeContents(target);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  }

  function theme(next) {
    const root = document.documentElement;
    const value = next || localStorage.getItem("odock-theme") ||
      (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    root.dataset.theme = value;
    if (next) localStorage.setItem("odock-theme", value);
  }
  theme();

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-api-form]");
    if (form) submit(form, event);
  });
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-api-button],[data-copy],[data-theme-toggle],[data-sign-out],[data-nav-toggle]");
    if (!target) return;
    if (target.matches("[data-api-button]")) press(target);
    else if (target.matches("[data-copy]")) copy(target);
    else if (target.matches("[data-theme-toggle]")) theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
    else if (target.matches("[data-sign-out]")) Odock.api("POST", "/api/auth/logout").then(() => window.location.assign("/sign-in"));
    else if (target.matches("[data-nav-toggle]")) {
      const nav = document.getElementById("sidebar");
      if (nav) { nav.classList.toggle("open"); target.setAttribute("aria-expanded", nav.classList.contains("open")); }
    }
  });
})();
