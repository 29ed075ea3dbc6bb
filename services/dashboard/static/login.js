"use strict";
// The token goes in a POST body (never a URL); the server answers with an HttpOnly session cookie.
const csrf = () => (document.cookie.match(/(?:^|; )tw_csrf=([^;]*)/) || [])[1] || "";
document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/login", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify({token: document.getElementById("token").value})});
  if (r.ok) location.href = "/overview"; else document.getElementById("result").textContent = await r.text();
});
