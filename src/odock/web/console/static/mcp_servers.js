// MCP server pages: the add / edit form's sections and body, key and tool grants, the catalogue.
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});
  Odock.prepare = Odock.prepare || {};

  const AUTH_FIELDS = {
    NONE: [],
    BEARER: ["token"],
    BASIC: ["username", "password"],
    OAUTH2: ["token_url", "client_id", "client_secret", "scope", "audience"],
  };

  // "NAME=value" lines as an object (a line without "=" is refused, naming the field).
  function linesToMap(text, field) {
    const map = {};
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line) continue;
      const cut = line.indexOf("=");
      if (cut <= 0) throw new Error(field + ": write each line as NAME=value (\"" + line.slice(0, 40) + "\")");
      map[line.slice(0, cut).trim()] = line.slice(cut + 1).trim();
    }
    return map;
  }

  function checked(form, name) {
    const input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : "";
  }

  // The form's body as the API takes it: only the chosen transport's and auth type's fields; an
  // edit also clears what the other transport had (a PATCH changes only the fields it names).
  Odock.prepare["mcp-server"] = async function (form, body) {
    const editing = form.dataset.editing === "true";
    for (const area of form.querySelectorAll("textarea[data-map]")) {
      body[area.dataset.map] = linesToMap(area.value, area.dataset.map);
    }
    if (body.transport === "STDIO") {
      delete body.endpoint_url;
      delete body.headers;
      if (editing) { body.endpoint_url = null; body.headers = {}; }
      body.stdio_args = body.stdio_args || [];
    } else {
      delete body.stdio_command;
      delete body.stdio_args;
      delete body.stdio_env;
      if (editing) { body.stdio_command = null; body.stdio_args = []; body.stdio_env = {}; }
    }
    const wanted = AUTH_FIELDS[body.auth_type] || [];
    const config = {};
    for (const name of wanted) {
      if (body.auth_config && body.auth_config[name] !== undefined) config[name] = body.auth_config[name];
    }
    body.auth_config = config;
    const scope = checked(form, "scope");
    if (scope !== "team") body.team_id = null;
    if (scope !== "key") body.api_key_id = null;
    body.allowed_tools = body.allowed_tools || [];
    body.blocked_tools = body.blocked_tools || [];
    const keywords = body.semantic_filter && body.semantic_filter.blocked_keywords;
    body.semantic_filter = keywords && keywords.length ? { blocked_keywords: keywords } : {};
    body.metadata = body.metadata || {};
    body.pricing = body.pricing || {};
    body.policies = body.policies || {};
    return body;
  };

  // A key's tool grants on one server: {"grants": [{"server": id, "tools": [...] | null}]}.
  Odock.prepare["mcp-tools"] = async function (form, body) {
    const tools = body.tools && body.tools.length ? body.tools : null;
    return { grants: [{ server: form.dataset.server || body.server, tools: tools }] };
  };

  // A catalogue entry as configured: empty optional maps left out.
  Odock.prepare["mcp-catalogue"] = async function (form, body) {
    for (const name of ["auth_config", "stdio_env"]) {
      if (body[name] && !Object.keys(body[name]).length) delete body[name];
    }
    return body;
  };

  // A created entry links to its server and is not sent again.
  function created(form, server) {
    const result = form.querySelector("[data-result]");
    const base = document.getElementById("create-picked").dataset.serversBase;
    form.dataset.created = server.id;
    const link = document.createElement("a");
    link.href = base + "/" + encodeURIComponent(server.id);
    link.textContent = server.name;
    result.className = "";
    result.replaceChildren("Created: ", link);
    form.querySelectorAll("input, select").forEach((input) => { input.disabled = true; });
  }
  document.addEventListener("odock:done", (event) => {
    const form = event.target.closest("form[data-catalogue-form]");
    if (form && event.detail && event.detail.id) created(form, event.detail);
  });

  // "Create N servers": each configured entry is sent on its own; its form shows its outcome
  // (a link to the new server, or the API's field errors), and those created are not sent again.
  async function createPicked(button) {
    button.disabled = true;
    try {
      for (const form of document.querySelectorAll("form[data-catalogue-form]")) {
        if (form.dataset.created) continue;
        const result = form.querySelector("[data-result]");
        form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
        const general = form.querySelector("[data-form-error]");
        if (general) { general.textContent = ""; general.hidden = true; }
        let body;
        try {
          body = await Odock.prepare["mcp-catalogue"](form, Odock.formBody(form));
        } catch (error) {
          Odock.showErrors(form, { message: String(error.message || error) });
          continue;
        }
        const answer = await Odock.api("POST", form.getAttribute("action"), body);
        if (!answer.ok) {
          Odock.showErrors(form, answer.body && answer.body.error);
          result.textContent = "Not created.";
          result.className = "error";
          continue;
        }
        created(form, answer.body);
      }
    } finally {
      button.disabled = false;
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("#create-picked");
    if (button) createPicked(button);
  });

  // Show the fields of the chosen transport and auth type only.
  function sync(form) {
    const transport = checked(form, "transport");
    form.querySelectorAll("[data-when-transport]").forEach((part) => {
      part.hidden = !part.dataset.whenTransport.split(" ").includes(transport);
    });
    const auth = form.querySelector("[data-auth-choice]");
    form.querySelectorAll("[data-when-auth]").forEach((part) => {
      part.hidden = !auth || part.dataset.whenAuth !== auth.value;
    });
    const scope = checked(form, "scope");
    const team = form.querySelector('[name="team_id"]');
    const key = form.querySelector('[name="api_key_id"]');
    if (team) team.closest(".field").hidden = scope !== "team";
    if (key) key.closest(".field").hidden = scope !== "key";
  }

  function start() {
    document.querySelectorAll("#mcp-server-form, [data-catalogue-form]").forEach(sync);
  }
  document.addEventListener("change", (event) => {
    const form = event.target.closest("#mcp-server-form, [data-catalogue-form]");
    if (form) sync(form);
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
