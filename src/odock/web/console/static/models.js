// Models pages: shaping request bodies before console.js sends them, and the import results.
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});
  Odock.prepare = Odock.prepare || {};

  function onlyUnit(pricing) {
    return !pricing || Object.keys(pricing).every((k) => k === "unit");
  }

  // A pricing form with every rate empty means "no pricing": {} for PUT …/pricing, left out on create.
  Odock.prepare["model-pricing"] = async function (form, body) {
    if (body.pricing !== undefined) {
      if (onlyUnit(body.pricing)) delete body.pricing;
      return body;
    }
    return onlyUnit(body) ? {} : body;
  };

  // The edit form sends the capabilities ticked, none included (unticking all clears them).
  Odock.prepare["model-edit"] = async function (form, body) {
    body.capabilities = body.capabilities || [];
    return body;
  };

  // Grant the chosen key this model: POST …/apikeys/{key}/models {"models": [model id]}.
  Odock.prepare["grant-model"] = async function (form, body) {
    form.setAttribute("action", form.dataset.actionTemplate.replace("{key}", encodeURIComponent(body.key)));
    return { models: [form.dataset.modelId] };
  };

  // A deployments form changes the model's whole config (PATCH …/models/{id} {"config": …}): the
  // config as the page was rendered (data-config) with the balancing fields, or one deployment,
  // added; the new deployment's fields are named for its place, config.deployments.N.…, as the
  // API's errors are.
  Odock.prepare["model-deployments"] = async function (form, body) {
    const config = JSON.parse(form.dataset.config);
    const changes = body.config || {};
    if (changes.load_balancing !== undefined) config.load_balancing = changes.load_balancing;
    if (changes.weight !== undefined) config.weight = changes.weight;
    const added = Object.values(changes.deployments || {});
    if (added.length) {
      const deployment = Object.assign({ provider_api_key_id: null, slug: null, weight: 1 }, added[0]);
      config.deployments = (config.deployments || []).concat([deployment]);
    }
    return { config: config };
  };

  // Choosing a provider offers its active keys in the form's provider-key select (the first chosen).
  async function offerKeys(providerSelect) {
    const keySelect = document.getElementById(providerSelect.dataset.keySelect);
    if (!keySelect) return;
    const none = new Option("None", "");
    if (!providerSelect.value) { keySelect.replaceChildren(none); return; }
    const url = providerSelect.dataset.keysUrl.replace("{provider}", encodeURIComponent(providerSelect.value));
    const answer = await Odock.api("GET", url);
    const keys = (answer.ok && answer.body && answer.body.items) || [];
    keySelect.replaceChildren(...keys.map((k) => new Option(k.name + " (" + k.key_preview + ")", k.id)), none);
    keySelect.value = keys.length ? keys[0].id : "";
  }
  document.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-key-select]");
    if (select) offerKeys(select);
  });

  const LABELS = { created: "Created", skipped: "Skipped (exists)", updated: "Pricing updated", failed: "Failed" };

  // After an import, list what happened to each model, linked to the models that exist.
  document.addEventListener("odock:done", (event) => {
    const form = event.target.closest("#import-form");
    if (!form) return;
    const list = document.querySelector("[data-import-results]");
    list.replaceChildren();
    for (const item of (event.detail && event.detail.items) || []) {
      const line = document.createElement("li");
      line.dataset.status = item.status;
      const badge = document.createElement("span");
      badge.className = "badge " + (item.status === "failed" ? "bad" : item.status === "skipped" ? "warn" : "ok");
      badge.textContent = LABELS[item.status] || item.status;
      line.append(badge, " ");
      if (item.model_id) {
        const link = document.createElement("a");
        link.href = form.dataset.modelsBase + "/" + encodeURIComponent(item.model_id);
        link.textContent = item.name;
        line.append(link);
      } else {
        line.append(item.name);
      }
      if (item.message && item.status === "failed") line.append(" — " + item.message);
      list.append(line);
    }
    const reload = document.createElement("li");
    const link = document.createElement("a");
    link.href = window.location.pathname;
    link.textContent = "Show the models list";
    reload.append(link);
    list.append(reload);
    form.querySelectorAll('input[name="models"]').forEach((box) => { box.checked = false; });
  });
})();
