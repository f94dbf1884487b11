// Budget pages: the create wizard (owner -> schedule -> limits -> review), one step at a time.
// Without this script every step shows at once. The form posts to the budgets or the quotas
// route of the API depending on the kind chosen; dates are wall-clock times in the chosen time
// zone, sent as instants with their UTC offset (the API wants an offset).
"use strict";
(function () {
  const STEPS = ["owner", "schedule", "limits", "review"];

  // Milliseconds to add to a UTC instant to get the wall-clock time in `zone` at that instant.
  function zoneOffset(zone, instant) {
    const format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    const parts = {};
    for (const part of format.formatToParts(new Date(instant))) parts[part.type] = part.value;
    const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return wall - Math.floor(instant / 1000) * 1000;
  }

  // A datetime-local value read in `zone`, as an ISO instant in UTC.
  function zonedInstant(value, zone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value);
    if (!m) throw new Error("not a date and time: " + value);
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    let instant = wall - zoneOffset(zone, wall);
    instant = wall - zoneOffset(zone, instant); // once more across an offset change
    return new Date(instant).toISOString().replace(".000Z", "Z");
  }
  window.OdockZones = { zonedInstant: zonedInstant };

  function chosen(form, selector) {
    const input = form.querySelector(selector + ":checked");
    return input ? input.value : "";
  }

  function toggle(form) {
    const owner = chosen(form, "[data-owner-type]");
    form.querySelectorAll("[data-owner-box]").forEach((box) => { box.hidden = box.dataset.ownerBox !== owner; });
    const kind = chosen(form, "[data-kind]") || "budget";
    form.querySelectorAll("[data-kind-box]").forEach((box) => {
      const on = box.dataset.kindBox === kind;
      box.hidden = !on;
      box.querySelectorAll("input,select").forEach((input) => { input.disabled = !on; });
    });
  }

  function show(form, step) {
    form.querySelectorAll("[data-step]").forEach((fs) => { fs.hidden = fs.dataset.step !== step; });
    document.querySelectorAll("[data-step-label]").forEach((li) => {
      if (li.dataset.stepLabel === step) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
    const current = form.querySelector('[data-step="' + step + '"]');
    if (step === "review") review(form);
    const first = current.querySelector("input:not([disabled]):not([type=hidden]),select:not([disabled]),button");
    if (first) first.focus();
  }

  function stepOf(element) {
    const fs = element.closest("[data-step]");
    return fs ? fs.dataset.step : STEPS[0];
  }

  function valid(fieldset) {
    for (const input of fieldset.querySelectorAll("input,select")) {
      if (!input.disabled && !input.checkValidity()) { input.reportValidity(); return false; }
    }
    return true;
  }

  function review(form) {
    const list = form.querySelector("[data-review]");
    list.textContent = "";
    let body;
    try { body = prepareBody(form, Odock.formBody(form), false); } catch (e) { body = {}; }
    const owner = chosen(form, "[data-owner-type]");
    const ownerInput = form.querySelector('[data-owner-input="' + owner + '"]');
    const ownerText = owner === "ORG" ? "the organisation" :
      owner.toLowerCase() + " " + (ownerInput && ownerInput.tagName === "SELECT" && ownerInput.selectedIndex > 0
        ? ownerInput.options[ownerInput.selectedIndex].text : (ownerInput && ownerInput.value) || "(not chosen)");
    const kind = chosen(form, "[data-kind]") || "budget";
    const rows = [
      ["Kind", kind === "budget" ? "Budget (USD)" : "Quota"],
      ["Name", body.name || "(missing)"],
      ["Owner", ownerText],
      ["Period", (body.period || "").toLowerCase() + " in " + (body.timezone || "UTC")],
      ["Starts", body.start_at || "now"],
      ["Ends", body.end_at || "never"],
      [kind === "budget" ? "Amount" : "Limit",
        kind === "budget" ? "$" + (body.amount_usd || "(missing)") : (body.limit !== undefined ? body.limit + " " + (body.metric || "").toLowerCase() : "(missing)")],
      ["Alerts at", (body.thresholds || []).map((t) => t + "%").join(", ") || "none"],
      ["Rollover", body.rollover ? "yes" : "no"],
    ];
    for (const [term, value] of rows) {
      const dt = document.createElement("dt"); dt.textContent = term;
      const dd = document.createElement("dd"); dd.textContent = value;
      list.append(dt, dd);
    }
  }

  function prepareBody(form, body, retarget) {
    const owner = chosen(form, "[data-owner-type]");
    if (owner && owner !== "ORG") {
      const input = form.querySelector('[data-owner-input="' + owner + '"]');
      if (input && input.value) body.owner_id = input.value.trim();
    }
    const zone = body.timezone || "UTC";
    for (const name of ["start_at", "end_at"]) {
      if (body[name]) body[name] = zonedInstant(body[name], zone);
    }
    if (Array.isArray(body.thresholds)) {
      body.thresholds = body.thresholds.map((t) => (/^\d+$/.test(t) ? parseInt(t, 10) : t));
    }
    if (retarget) {
      const kind = chosen(form, "[data-kind]") || "budget";
      form.setAttribute("action", form.dataset.apiBase + (kind === "quota" ? "/quotas" : "/budgets"));
      form.dataset.then = form.dataset.pageBase + (kind === "quota" ? "/quotas/{id}" : "/{id}");
    }
    return body;
  }

  window.Odock = window.Odock || {};
  Odock.prepare = Odock.prepare || {};
  Odock.prepare.meter = async (form, body) => prepareBody(form, body, true);

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form[data-meter-wizard]");
    if (!form) return;
    const zone = form.querySelector("[data-local-zone]");
    try {
      const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone && local && Array.from(zone.options).some((o) => o.value === local)) zone.value = local;
    } catch (e) { /* keep UTC */ }
    toggle(form);
    show(form, STEPS[0]);
    form.querySelector('[data-step="owner"] input:checked')?.focus();
    form.addEventListener("change", () => toggle(form));
    form.addEventListener("click", (event) => {
      const button = event.target.closest("[data-next],[data-back]");
      if (!button) return;
      const step = stepOf(button);
      const at = STEPS.indexOf(step);
      if (button.matches("[data-next]")) {
        if (!valid(form.querySelector('[data-step="' + step + '"]'))) return;
        show(form, STEPS[at + 1]);
      } else show(form, STEPS[at - 1]);
    });
    // An error the API reports on a field of an earlier step: go back to that step.
    new MutationObserver((records) => {
      for (const record of records) {
        const node = record.target.nodeType === Node.ELEMENT_NODE ? record.target : record.target.parentElement;
        const slot = node && node.closest("[data-error-for]");
        if (slot && slot.textContent.trim() && slot.closest("[data-step]")?.hidden) {
          show(form, stepOf(slot));
          return;
        }
      }
    }).observe(form, { subtree: true, childList: true, characterData: true });
  });
})();
