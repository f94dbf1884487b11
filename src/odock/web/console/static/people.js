// Users and Teams pages: the invitation link shown once, and the team a membership form names.
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});
  Odock.prepare = Odock.prepare || {};

  // A created or resent invitation: show its link (the API gives it in this answer only).
  function showLink(answer) {
    const panel = document.getElementById("invite-result");
    if (!panel || !answer || !answer.invite_url) return;
    document.getElementById("invite-link").textContent = answer.invite_url;
    document.getElementById("invite-email").textContent = answer.email;
    const copy = panel.querySelector("[data-copy]");
    if (copy) copy.textContent = "Copy link";
    panel.hidden = false;
    panel.focus();
  }

  document.addEventListener("odock:done", (event) => {
    const source = event.target;
    if (!(source instanceof Element) || !source.matches("[data-shows-link]")) return;
    showLink(event.detail);
    if (source.tagName === "FORM") source.reset();
  });

  // "Add to team": the team chosen is part of the address the membership is posted to.
  Odock.prepare.membership = async function (form, body) {
    const team = body.team_id;
    if (!team) throw new Error("Choose a team.");
    form.setAttribute("action", form.dataset.actionTemplate.replace("{team_id}", encodeURIComponent(team)));
    delete body.team_id;
    return body;
  };
})();
