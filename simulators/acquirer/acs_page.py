"""The ACS pages a cardholder sees: plain HTML with a little inline CSS and JS, no external resources.

Everything interpolated is escaped (ids and URLs come from requests). The page's script posts a heartbeat
every ``interval`` seconds while it is open and stops once the server says the challenge is over.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;display:flex;justify-content:center}
main{background:#fff;margin:3rem 1rem;padding:1.5rem 2rem;border-radius:8px;max-width:26rem;
box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.25rem;margin-top:0}.muted{color:#555;font-size:.9rem}
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem}dt{color:#555}dd{margin:0}
input{font-size:1.2rem;letter-spacing:.2em;padding:.4rem;width:9rem}
.row{display:flex;gap:.75rem;margin-top:1rem}
button{font-size:1rem;padding:.5rem 1rem;border-radius:4px;border:1px solid #888;cursor:pointer}
#submit{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.sandbox{background:#fef3c7;padding:.5rem;border-radius:4px}
"""


def _document(title: str, body: str, script: str = "") -> str:
    tag = f"<script>{script}</script>" if script else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main>{tag}</body></html>\n"
    )


def _money(amount: int, currency: str) -> str:
    return f"{amount} {currency} (minor units)"


def challenge_page(auth: dict[str, Any], otp: str, interval_s: float) -> str:
    auth_id = escape(auth["id"])
    body = f"""
<h1>Verify your payment</h1>
<p class="muted">Your card issuer asks you to confirm this purchase.</p>
<dl><dt>Amount</dt><dd id="amount">{escape(_money(auth["amount"], auth["currency"]))}</dd>
<dt>Reference</dt><dd>{escape(auth["reference"])}</dd></dl>
<p class="sandbox">Sandbox: the one-time code is <strong>{escape(otp)}</strong>.
Any other code fails the authentication.</p>
<form id="challenge" method="post" action="/acs/challenge/{auth_id}">
<label for="otp">One-time code</label><br>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" maxlength="12" required autofocus>
<div class="row">
<button id="submit" type="submit" name="action" value="submit">Submit</button>
<button id="cancel" type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
</div></form>
<p class="muted" id="status" aria-live="polite"></p>"""
    # json.dumps makes the values safe JS literals; "</" cannot occur in them (ids are [a-z0-9_]).
    script = f"""
(function () {{
  var url = {json.dumps("/acs/challenge/" + auth["id"] + "/heartbeat")};
  var every = {json.dumps(interval_s * 1000)};
  var timer = setInterval(function () {{
    fetch(url, {{method: "POST"}}).then(function (answer) {{
      if (answer.status === 404 || answer.status === 409) {{
        clearInterval(timer);
        document.getElementById("status").textContent = "This verification has already finished.";
      }}
    }}).catch(function () {{}});
  }}, every);
  document.getElementById("challenge").addEventListener("submit", function () {{
    clearInterval(timer);
    document.getElementById("status").textContent = "Checking...";
  }});
}})();"""
    return _document("3-D Secure verification", body, script.replace("</", "<\\/"))


def message_page(title: str, text: str) -> str:
    return _document(title, f'<h1 id="title">{escape(title)}</h1><p id="message">{escape(text)}</p>')


def done_page(auth: dict[str, Any]) -> str:
    text = f"Authentication {auth['status']}. You can close this window."
    return message_page("Verification finished", text)


def redirect_page(location: str) -> str:
    """The body of the 303 (browsers follow the Location header; this is for people with curl)."""
    link = escape(location, quote=True)
    return _document("Redirecting", f'<h1>Returning to the shop</h1><p><a href="{link}">{link}</a></p>')
