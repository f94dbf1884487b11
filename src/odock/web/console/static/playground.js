// Odock console: the playground. Posts the prompt to the playground route of the chosen key and
// reads the answer as it comes (fetch + ReadableStream, server-sent events), then reads the usage
// record of the governed call from the usage API by its request id.
"use strict";
(function () {
  const Odock = window.Odock;
  const RECORD_WAIT_MS = 10000; // usage records are written in the background, within milliseconds
  const RECORD_POLL_MS = 200;

  function text(el, value) { if (el) el.textContent = value; }

  function tokensText(usage) {
    if (!usage) return "—";
    const p = usage.prompt_tokens ?? usage.prompt, c = usage.completion_tokens ?? usage.completion;
    const t = usage.total_tokens ?? usage.total;
    return p + " in · " + c + " out · " + t + " total";
  }

  // The events of an SSE body: calls onData(data string) for each complete event.
  async function readEvents(body, onData) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
        if (data.length) onData(data.join("\n"));
      }
    }
  }

  async function findRecord(form, requestId) {
    const url = form.dataset.usage + "?q=" + encodeURIComponent(requestId) + "&limit=5";
    const deadline = Date.now() + RECORD_WAIT_MS;
    while (Date.now() < deadline) {
      const answer = await Odock.api("GET", url);
      if (!answer.ok) return null; // e.g. no usage read permission: nothing more to show
      const found = (answer.body.items || []).find((r) => r.request_id === requestId);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, RECORD_POLL_MS));
    }
    return null;
  }

  function bodyOf(form) {
    const values = Odock.formBody(form);
    const messages = [];
    if (values.system && values.system.trim()) messages.push({ role: "system", content: values.system });
    messages.push({ role: "user", content: values.prompt || "" });
    const body = { model: values.model, messages: messages, stream: !!form.elements.stream.checked };
    if (values.max_tokens !== undefined) body.max_tokens = values.max_tokens;
    return body;
  }

  function setup(form) {
    const out = document.querySelector("[data-answer]");
    const call = document.querySelector("[data-call]");
    const slot = (name) => call.querySelector("[data-" + name + "]");
    const send = form.querySelector("[data-send]");
    const stop = form.querySelector("[data-stop]");
    let controller = null;

    stop.addEventListener("click", () => { if (controller) controller.abort(); });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
      const general = form.querySelector("[data-form-error]");
      if (general) { general.hidden = true; general.textContent = ""; }
      let body;
      try { body = bodyOf(form); } catch (e) { Odock.showErrors(form, { fields: [{ field: e.field, message: e.message }] }); return; }
      out.textContent = "";
      out.setAttribute("aria-busy", "true");
      ["request-id", "status", "tokens", "cost"].forEach((n) => text(slot(n), "—"));
      text(slot("record-link"), "—");
      send.disabled = true; stop.hidden = false;
      controller = new AbortController();
      let usage = null, requestId = null;
      try {
        const response = await fetch(form.getAttribute("action"), {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": Odock.csrfToken(), Accept: "text/event-stream, application/json" },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
        requestId = response.headers.get("x-request-id");
        text(slot("request-id"), requestId || "—");
        text(slot("status"), String(response.status));
        const type = response.headers.get("content-type") || "";
        if (!response.ok) {
          const error = type.includes("json") ? (await response.json()).error : null;
          Odock.showErrors(form, error || { message: "The call failed (" + response.status + ")." });
          out.textContent = "";
        } else if (type.includes("text/event-stream")) {
          await readEvents(response.body, (data) => {
            if (data === "[DONE]") return;
            const chunk = JSON.parse(data);
            if (chunk.error) { Odock.showErrors(form, chunk.error); return; }
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) out.append(document.createTextNode(delta.content));
            if (chunk.usage) usage = chunk.usage;
          });
        } else {
          const answer = await response.json();
          const message = answer.choices && answer.choices[0] && answer.choices[0].message;
          out.textContent = (message && message.content) || "";
          usage = answer.usage || null;
        }
        if (usage) text(slot("tokens"), tokensText(usage));
      } catch (e) {
        if (e.name !== "AbortError") Odock.showErrors(form, { message: "The call failed: " + e.message });
        else text(slot("status"), "stopped");
      } finally {
        out.setAttribute("aria-busy", "false");
        send.disabled = false; stop.hidden = true; controller = null;
      }
      if (!requestId) return;
      const record = await findRecord(form, requestId);
      if (!record) return;
      text(slot("tokens"), tokensText(record.tokens));
      text(slot("cost"), record.total_cost_usd != null ? "$" + record.total_cost_usd : "not priced");
      const link = document.createElement("a");
      link.href = form.dataset.record + encodeURIComponent(record.id);
      link.textContent = record.id;
      link.dataset.recordId = record.id;
      const dd = slot("record-link");
      dd.textContent = "";
      dd.append(link);
      call.dataset.recorded = "true";
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.querySelector("form[data-playground]");
    if (form) setup(form);
  });
})();
