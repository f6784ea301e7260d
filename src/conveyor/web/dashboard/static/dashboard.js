// conveyor's dashboard: its own small script, no library.
//
// 1. Live parts: every element with [data-live] and an id is refreshed every few seconds
//    (body[data-refresh]) from the same page, fetched again, without a full reload. A part
//    holding the keyboard focus or a text selection is left alone until it no longer does,
//    and open <details> stay open. Paused while the tab is hidden. A page that takes the
//    server long to make (counts of a very large store) is refreshed less often: never
//    sooner than ten times its last answer took, so that a tab keeps a server busy at
//    most a tenth of the time. The footer shows when they were last updated; its live
//    region (what a screen reader reads out) changes only when updates stop working.
//    An error page of a GET (a 503 while the store is away) is reloaded once its
//    address answers again; one shown for a form's POST is not fetched again.
// 2. Forms with [data-confirm] ask before they submit.
"use strict";

(function () {
  const body = document.body;
  const every = Number(body.dataset.refresh || 0) * 1000;
  const status = document.getElementById("live-status");
  const updated = document.getElementById("live-updated");

  // Why updates stopped, announced once; "" again once they work.
  function say(text) {
    if (status && status.textContent !== text) status.textContent = text;
  }

  function busy(element) {
    if (element.contains(document.activeElement) && document.activeElement !== body) return true;
    const selection = window.getSelection();
    return Boolean(
      selection && !selection.isCollapsed && selection.rangeCount &&
      element.contains(selection.getRangeAt(0).commonAncestorContainer)
    );
  }

  function swap(current, fresh) {
    for (const open of current.querySelectorAll("details[open][id]")) {
      const twin = fresh.querySelector("#" + CSS.escape(open.id));
      if (twin) twin.open = true;
    }
    current.replaceWith(document.adoptNode(fresh));
  }

  let timer = null;
  let running = false;
  const loaded = performance.getEntriesByType("navigation")[0];
  let took = loaded ? loaded.responseEnd - loaded.requestStart : 0;
  function schedule() {
    if (every > 0) timer = window.setTimeout(refresh, Math.max(every, took * 10));
  }

  async function refresh() {
    timer = null;
    if (document.hidden) return; // the visibilitychange handler starts again
    running = true;
    const started = performance.now();
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Conveyor-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.redirected && new URL(response.url).pathname === body.dataset.login) {
        say("Your session has ended: reload the page to log in again.");
        running = false;
        return;
      }
      if (!response.ok) {
        say(response.status === 404 ? "This no longer exists." : "Update failed (" + response.status + ").");
        if (response.status === 404) {
          running = false;
          return;
        }
      } else if (body.dataset.reloadWhenOk !== undefined) {
        // An error page (a 503 while the store was away): the page it stands for answers
        // now, and holds none of this one's parts: load it whole.
        window.location.reload();
        return;
      } else {
        const html = await response.text();
        took = performance.now() - started;
        const page = new DOMParser().parseFromString(html, "text/html");
        for (const current of document.querySelectorAll("[data-live][id]")) {
          const fresh = page.getElementById(current.id);
          if (fresh && !busy(current)) swap(current, fresh);
        }
        if (updated) updated.textContent = "Updated " + new Date().toLocaleTimeString();
        say("");
      }
    } catch (error) {
      say("Update failed: the server does not answer.");
    }
    running = false;
    schedule();
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !running && every > 0) refresh();
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  schedule();
})();
