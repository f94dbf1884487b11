// Invoices page: the first and last day only matter for a custom period; choosing a day
// switches the period to "custom", choosing a preset clears nothing (the server computes it).
"use strict";
(function () {
  const form = document.querySelector("[data-invoice-form]");
  if (!form) return;
  const preset = form.querySelector('[name="preset"]');
  for (const name of ["from", "to"]) {
    const input = form.querySelector(`[name="${name}"]`);
    if (input) input.addEventListener("change", () => { preset.value = "custom"; });
  }
})();
