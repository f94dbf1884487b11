// The Routing card of an API key's page: a policy form per model type (spec §9).
//
// Candidate and native-fallback rows are added (from the form's <template>s), removed and moved
// up or down; after each change the rows are renumbered so that their field names (and the error
// slots beside them) follow the API's 422 params, e.g. "chat.candidates.0.modelName". The body sent
// with PATCH …/routing is {"<type>": policy}: console.js collects the fields, and the "routing-policy"
// step below turns the numbered rows into lists.
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});
  Odock.prepare = Odock.prepare || {};

  // A candidate row's field names and labels, or a fallback row's, from its place in its list.
  function renumberRow(row, kind, list, index) {
    for (const input of row.querySelectorAll("[data-part]")) {
      const part = input.dataset.part;
      const base = list === "candidates" ? kind + ".candidates." + index : kind + ".nativeFallback." + list + "." + index;
      const name = part ? base + "." + part : base;
      const id = "rt-" + name.replace(/\./g, "-");
      input.name = name;
      input.id = id;
      input.setAttribute("aria-describedby", id + "-e");
      input.setAttribute("aria-label", list === "candidates"
        ? "Candidate " + (index + 1) + " " + (part === "modelName" ? "model" : part)
        : list + " fallback " + (index + 1));
      const slot = row.querySelector('[data-part-error="' + part + '"]');
      if (slot) { slot.id = id + "-e"; slot.dataset.errorFor = name; }
    }
  }

  function renumber(list) {
    const form = list.closest("form[data-routing-form]");
    Array.from(list.children).forEach((row, index) => renumberRow(row, form.dataset.kind, list.dataset.rows, index));
  }

  function addRow(form, list, model) {
    const rows = form.querySelector('[data-rows="' + list + '"]');
    const template = form.querySelector('template[data-template="' + list + '"]');
    const row = template.content.firstElementChild.cloneNode(true);
    rows.append(row);
    const select = row.querySelector("select");
    if (model !== undefined) select.value = model;
    const priority = row.querySelector('[data-part="priority"]');
    if (priority) priority.value = String(rows.children.length);
    renumber(rows);
    return row;
  }

  // "Auto-detect": one candidate per model of the type the key is granted, in the offered order.
  function autoDetect(form) {
    const rows = form.querySelector('[data-rows="candidates"]');
    const template = form.querySelector('template[data-template="candidates"]');
    const names = Array.from(template.content.querySelectorAll("option"), (o) => o.value);
    rows.replaceChildren();
    names.forEach((name) => addRow(form, "candidates", name));
  }

  function moveRow(row, step) {
    const rows = row.parentElement;
    if (step < 0 && row.previousElementSibling) rows.insertBefore(row, row.previousElementSibling);
    if (step > 0 && row.nextElementSibling) rows.insertBefore(row.nextElementSibling, row);
    renumber(rows);
  }

  function removeRow(row) {
    const rows = row.parentElement;
    row.remove();
    renumber(rows);
  }

  // "Add model type": show that type's (blank) policy form, and offer the type no more.
  function addType(button) {
    const select = document.getElementById("rt-add-type");
    const form = document.querySelector('form[data-routing-blank][data-kind="' + CSS.escape(select.value) + '"]');
    if (!form) return;
    form.hidden = false;
    select.selectedOptions[0].remove();
    if (!select.options.length) button.closest("[data-routing-add]").hidden = true;
    form.querySelector("select").focus();
  }

  function listOf(numbered) {
    if (!numbered) return [];
    return Object.keys(numbered).sort((a, b) => Number(a) - Number(b)).map((k) => numbered[k]);
  }

  // The form's fields as the API takes them: candidates and fallbacks as lists, unticked triggers as [].
  Odock.prepare["routing-policy"] = async function (form, body) {
    const kind = form.dataset.kind;
    const policy = body[kind] || {};
    policy.candidates = listOf(policy.candidates);
    policy.failoverOn = policy.failoverOn || [];
    const fallbacks = {};
    for (const [family, numbered] of Object.entries(policy.nativeFallback || {})) {
      const names = listOf(numbered);
      if (names.length) fallbacks[family] = names;
    }
    policy.nativeFallback = fallbacks;
    return { [kind]: policy };
  };

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-add-row],[data-auto-detect],[data-move],[data-remove-row],[data-add-routing-type]");
    if (!target || !target.closest("[data-testid=key-routing]")) return;
    const form = target.closest("form[data-routing-form]");
    if (target.matches("[data-add-row]")) addRow(form, target.dataset.addRow).querySelector("select").focus();
    else if (target.matches("[data-auto-detect]")) autoDetect(form);
    else if (target.matches("[data-move]")) moveRow(target.closest("[data-row]"), Number(target.dataset.move));
    else if (target.matches("[data-remove-row]")) removeRow(target.closest("[data-row]"));
    else if (target.matches("[data-add-routing-type]")) addType(target);
  });
})();
