"""The consent page: a small server-rendered form, no JavaScript.

It names the app as the operator registered it (name, publisher, logo, purpose) and lists
the scopes asked; the patient may untick the data scopes and refresh, then authorise or
refuse. Everything shown is escaped; the form carries only the one-time consent handle.
"""

from html import escape
from typing import Any

from espace_api.smart.scopes import choosable, describe

# Served with the page: no framing (click-jacking), no scripts, nothing cached or leaked.
HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; img-src https:; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
}

_STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
    "img{max-height:64px}li{margin:.4em 0}button{margin-right:1em;padding:.5em 1em}"
)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def consent_page(
    *, app_name: str, catalogue: dict[str, Any], scopes: list[str], handle: str, action: str
) -> str:
    """The consent form for one authorization request."""
    logo = catalogue.get("logo_uri")
    items = []
    for scope in scopes:
        label = f"{escape(describe(scope))} <code>{escape(scope)}</code>"
        if choosable(scope):
            items.append(
                f'<li><label><input type="checkbox" name="scope" value="{escape(scope)}" '
                f"checked> {label}</label></li>"
            )
        else:
            items.append(f"<li>{label}</li>")
    body = (
        (f'<img src="{escape(logo)}" alt="">' if logo else "")
        + f"<h1>{escape(app_name)} asks to access your health space</h1>"
        + f"<p>Published by <strong>{escape(str(catalogue.get('publisher', '')))}</strong>.</p>"
        + f"<p>{escape(str(catalogue.get('purpose', '')))}</p>"
        + f'<form method="post" action="{escape(action)}">'
        + f'<input type="hidden" name="request" value="{escape(handle)}">'
        + "<p>It will be able to:</p><ul>"
        + "".join(items)
        + "</ul><p>You can untick what you do not want to share, and revoke this access at "
        "any time from your space.</p>"
        + '<button type="submit" name="decision" value="approve">Allow</button>'
        + '<button type="submit" name="decision" value="deny">Refuse</button>'
        + "</form>"
    )
    return _document(f"{app_name}: access to your health space", body)
