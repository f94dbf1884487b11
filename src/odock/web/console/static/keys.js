// API key pages: the create wizard's owner fields and time zone, and the secret shown once.
// The secret is only in the API's answer to create and rotate; it is put in the page here and
// never sent anywhere else.
"use strict";
(function () {
  function showOwner(form) {
    const checked = form.querySelector("[data-key-type]:checked");
    const type = checked ? checked.value : "ORGANISATION";
    form.querySelectorAll("[data-owner]").forEach((box) => {
      const on = box.dataset.owner === type;
      box.hidden = !on;
      box.querySelectorAll("select,input").forEach((input) => { input.disabled = !on; });
    });
  }

  function localZone(select) {
    let zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    if (zone && Array.from(select.options).some((o) => o.value === zone)) select.value = zone;
  }

  function reveal(panel, secret, linkHref, linkText) {
    panel.querySelector("[data-secret]").textContent = secret;
    const link = panel.querySelector("[data-secret-link]");
    link.textContent = "";
    if (linkHref) {
      const a = document.createElement("a");
      a.href = linkHref;
      a.textContent = linkText;
      a.className = "button secondary";
      link.appendChild(a);
    }
    panel.hidden = false;
    panel.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const wizard = document.querySelector("form[data-key-wizard]");
    if (wizard) {
      showOwner(wizard);
      wizard.addEventListener("change", (event) => {
        if (event.target.matches("[data-key-type]")) showOwner(wizard);
      });
      const zone = wizard.querySelector("[data-local-zone]");
      if (zone) localZone(zone);
    }
  });

  document.addEventListener("odock:done", (event) => {
    const source = event.target;
    const key = event.detail || {};
    if (!key.secret) return;
    if (source.matches("form[data-key-wizard]")) {
      source.hidden = true;
      reveal(document.getElementById("new-secret"), key.secret, source.dataset.keyBase + encodeURIComponent(key.id), "Open the key's page");
    } else if (source.matches("form[data-rotate]")) {
      source.reset();
      const preview = document.querySelector('[data-testid="preview"]');
      if (preview) preview.textContent = key.preview;
      reveal(document.getElementById("rotated-secret"), key.secret, window.location.pathname, "Done: show the rotation history");
    }
  });
})();
