// The pages' one script (no framework): forms post in the background and swap in the
// fragment the server renders; the user's page follows its event stream; the console
// refreshes its live sections and keeps the rows an operator ticked.
"use strict";

const banner = () => document.getElementById("banner");

function say(text) {
  const b = banner();
  if (!b) return;
  b.textContent = text || "";
  b.hidden = !text;
}

// Replaces the content of `selector` with `html`, keeping the ticked rows ticked.
function swap(selector, html) {
  const target = document.querySelector(selector);
  if (!target) return;
  const ticked = new Set(
    [...target.querySelectorAll("input[type=checkbox][name=id]:checked")].map((c) => c.value)
  );
  target.innerHTML = html;
  target.querySelectorAll("input[type=checkbox][name=id]").forEach((c) => {
    c.checked = ticked.has(c.value);
  });
  // What an action did stays on screen when its section refreshes.
  const flash = target.querySelector("[data-flash]");
  const keep = document.getElementById("flash");
  if (flash && keep) keep.replaceChildren(flash);
}

// Fetches a fragment; a failure shows in the banner until a later fetch succeeds.
async function load(url, options) {
  let response;
  try {
    response = await fetch(url, Object.assign({ credentials: "same-origin", headers: { Accept: "text/html" } }, options));
  } catch (e) {
    say("The service cannot be reached. Retrying…");
    return null;
  }
  if (response.status === 401) {
    window.location.reload();
    return null;
  }
  if (response.status >= 500) {
    say("The service is having trouble right now. Retrying…");
    return null;
  }
  say("");
  return response.text();
}

async function refresh(section) {
  const html = await load(section.dataset.src);
  if (html !== null) swap("#" + section.id, html);
  return html !== null;
}

// Forms with `data-target` post (or get) in the background and swap their target.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.dataset.target) return;
  event.preventDefault();
  const button = event.submitter;
  const confirmText = (button && button.dataset.confirm) || form.dataset.confirm;
  if (confirmText && !window.confirm(confirmText)) return;
  const data = new FormData(form, button);
  const method = (form.getAttribute("method") || "get").toUpperCase();
  // Not `form.action`: a field named "action" would shadow it.
  const url = form.getAttribute("action");
  let html;
  if (button) button.disabled = true;
  try {
    if (method === "GET") {
      html = await load(url + "?" + new URLSearchParams(data));
    } else {
      html = await load(url, { method, body: new URLSearchParams(data) });
    }
  } finally {
    if (button) button.disabled = false;
  }
  if (html !== null) swap(form.dataset.target, html);
});

// Links with `data-target` load their fragment in place.
document.addEventListener("click", async (event) => {
  const link = event.target.closest("a[data-target]");
  if (link) {
    event.preventDefault();
    const html = await load(link.getAttribute("href"));
    if (html !== null) {
      swap(link.dataset.target, html);
      document.querySelector(link.dataset.target).scrollIntoView({ behavior: "smooth" });
    }
    return;
  }
  const clear = event.target.closest("[data-clear]");
  if (clear) {
    swap(clear.dataset.clear, "");
    return;
  }
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    try {
      await navigator.clipboard.writeText(copy.dataset.copy);
    } catch (e) {
      const input = copy.parentElement.querySelector("input");
      if (input) { input.select(); document.execCommand("copy"); }
    }
    copy.textContent = "Copied";
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  }
});

// The user's page: the event stream says when the node or the VPN changed; the page then
// fetches the fragment. A broken stream is reopened with a new ticket.
function follow() {
  const nodes = document.getElementById("nodes");
  const vpn = document.getElementById("vpn");
  let stream = null;
  let retry = 1000;
  const open = async () => {
    let ticket;
    try {
      const r = await fetch("/app/ticket", { method: "POST", credentials: "same-origin" });
      if (r.status === 401) return window.location.reload();
      if (!r.ok) throw new Error(String(r.status));
      ticket = (await r.json()).ticket;
    } catch (e) {
      say("The service cannot be reached. Retrying…");
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 10000);
      return;
    }
    stream = new EventSource("/api/v1/my/events?ticket=" + encodeURIComponent(ticket));
    stream.addEventListener("node", () => { retry = 1000; refresh(nodes); });
    stream.addEventListener("vpn", () => { refresh(vpn); });
    stream.addEventListener("open", () => { say(""); });
    stream.onerror = () => {
      stream.close();
      say("Live updates paused. Reconnecting…");
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 10000);
    };
  };
  open();
  // Several nodes: the stream carries the node the app shows; the others are refreshed
  // now and then, and every section recovers after an outage.
  setInterval(() => { refresh(nodes); }, 5000);
}

// Sections with `data-every` refresh on their own (the console's queue and load).
function poll() {
  document.querySelectorAll("[data-src][data-every]").forEach((section) => {
    setInterval(() => refresh(section), Number(section.dataset.every));
  });
}

// A sign-in link carries the token after `#`, which never reaches a server. In demo mode
// it is posted at once and the session cookie takes over. Otherwise the page names the
// account the link is for and waits for the visitor to sign in (a link must not sign a
// visitor into somebody else's account unawares). A visitor already signed in never
// sees this page, so an open session is never replaced.
function signInFromLink() {
  const match = window.location.hash.match(/^#token=(.+)$/);
  const form = document.getElementById("signin");
  if (!match || !form) return;
  history.replaceState(null, "", window.location.pathname);
  const token = decodeURIComponent(match[1]);
  form.querySelector("textarea").value = token;
  if (form.dataset.linkSignsIn === "true") {
    form.submit();
    return;
  }
  const note = document.getElementById("link-account");
  const who = accountOf(token);
  note.textContent = who
    ? "This link signs in as " + who + ". Sign in only if that is your account."
    : "This link carries a token. Sign in only if it is yours.";
  note.hidden = false;
}

// The account a token names (`uid`, else `sub`), read without checking it: only shown.
function accountOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    const who = typeof claims.uid === "string" ? claims.uid : claims.sub;
    return typeof who === "string" && who ? who : null;
  } catch (e) {
    return null;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "signin") signInFromLink();
  if (page === "user") follow();
  if (page === "console") poll();
});
