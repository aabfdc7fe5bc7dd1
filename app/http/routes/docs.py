"""Swagger UI and ReDoc, served by the service itself: their JavaScript and CSS come from the
`fastapi-offline` package's data, never from a CDN, so the docs work on a machine without the
internet, under a content security policy that allows this origin only.

The pages' one inline script (Swagger UI's start-up call, which carries the OpenAPI URL) is
allowed by its sha256, so no other inline script can run. Styles may be inline: both UIs set
`style` attributes as they render.

ReDoc's bundle draws Redocly's logo in its sidebar footer ("API docs by Redocly") as an image
from Redocly's CDN, which the policy blocks, with an error in the browser's console on every
load. `/redoc` loads the bundle from `redoc_script`, the package's file without that one image
(the footer's link and text stay), so the page asks nothing of another host.
"""

import base64
import functools
import hashlib
import re
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
SWAGGER_UI_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
# Under the assets' prefix (open like them without an API key), beside the package's own file;
# this router is included before the assets are mounted, so the route answers it.
REDOC_SCRIPT_PATH = f"{ASSETS_PATH}/redoc.standalone.offline.js"
# The footer's logo in ReDoc 2's minified bundle: `<img alt="redocly logo" src="https://cdn...">`
# made by `React.createElement`, kept from rendering by putting `null` in its place.
REMOTE_LOGO = re.compile(
    rb'\b[\w$]+\.createElement\("img",\{alt:"redocly logo",[^{}]*?'
    rb'src:"https://cdn\.redoc\.ly/redoc/logo-mini\.svg"\}\)'
)

assets = StaticFiles(packages=[("fastapi_offline", "static")])
router = APIRouter(include_in_schema=False)


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """`page` with a policy that runs only this origin's scripts and the page's own inline
    ones; `security.with_security_headers` keeps a policy a route has set."""
    inline = re.findall(rb"<script>(.*?)</script>", page.body, re.S)
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in inline
    )
    page.headers["content-security-policy"] = (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "frame-ancestors 'none'"
    )
    return page


def _urls(request: Request) -> tuple[str, str]:
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_PATH}"


@router.get(SWAGGER_UI_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url, assets_url = _urls(request)
    return with_policy(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{assets_url}/favicon.png",
            swagger_ui_parameters=request.app.swagger_ui_parameters,
        )
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return with_policy(get_swagger_ui_oauth2_redirect_html())


@functools.cache
def redoc_script() -> tuple[bytes, str]:
    """ReDoc's standalone bundle from `fastapi-offline` without the remote logo, and its ETag.
    Read once: the file is about a megabyte."""
    bundle = resources.files("fastapi_offline").joinpath("static", "redoc.standalone.js")
    script = REMOTE_LOGO.sub(b"null", bundle.read_bytes())
    return script, f'"{hashlib.sha256(script).hexdigest()[:32]}"'


@router.api_route(REDOC_SCRIPT_PATH, methods=["GET", "HEAD"])  # as StaticFiles answers
async def redoc_bundle(request: Request) -> Response:
    script, etag = redoc_script()
    headers = {"etag": etag, "cache-control": "no-cache"}  # kept, and checked on each use
    # Compared weakly, as StaticFiles does: the gzip middleware weakens the tag it compresses.
    asked = request.headers.get("if-none-match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in asked.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    openapi_url, assets_url = _urls(request)
    root = request.scope.get("root_path", "")
    return with_policy(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_SCRIPT_PATH}",
            redoc_favicon_url=f"{assets_url}/favicon.png",
            with_google_fonts=False,
        )
    )
