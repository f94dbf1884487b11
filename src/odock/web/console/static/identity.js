// Profile page: a created admin token's secret is shown once, with a copy button, and the new
// token joins the list without reloading (a reload would lose the secret).
"use strict";
(function () {
  document.addEventListener("odock:done", (event) => {
    const form = event.target.closest && event.target.closest("#token-form");
    if (!form) return;
    const token = event.detail || {};
    const box = document.getElementById("new-token");
    document.getElementById("new-token-secret").textContent = token.token || "";
    box.hidden = false;
    form.reset();
    const body = document.querySelector("#token-table tbody");
    if (!body) {
      const empty = box.parentElement.querySelector("[data-testid=empty] p");
      if (empty) empty.textContent = "Token “" + token.name + "” created. Reload the page to manage it here.";
      return;
    }
    const row = document.createElement("tr");
    row.dataset.testid = "token-row";
    for (const text of [token.name, token.preview, "just now", token.expires_at || "—", "active", ""]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    body.prepend(row);
  });
})();
