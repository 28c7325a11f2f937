"""Slack Bolt for Python (AsyncApp on aiohttp) as the ingest baseline: it verifies the signature,
parses the delivery, acks, and runs a no-op app_mention handler. Nothing is stored.

    python bench/bolt_app.py --port 3000 --secret S

No network: AsyncApp has no `token_verification_enabled` switch (that belongs to the sync `App`);
with a plain `token=`, AsyncApp's single-team authorization calls auth.test on the first request.
So the authorization is a static `authorize` function (no Web API call), and the Web API client
points at a dead loopback port in case anything still tries to call out.
"""

import argparse
import logging

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient


def build_app(secret: str) -> AsyncApp:
    async def authorize(enterprise_id=None, team_id=None, user_id=None, **_kwargs):
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_user_id="UBOT",
            bot_id="BBENCH",
            bot_token="xoxb-bench",
        )

    app = AsyncApp(
        signing_secret=secret,
        authorize=authorize,
        client=AsyncWebClient(base_url="http://127.0.0.1:9/api/"),
    )

    @app.event("app_mention")
    async def on_mention():
        # Events are acked by Bolt itself; the handler does nothing.
        return None

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build_app(args.secret)
    server = app.server(port=args.port, path="/slack/events", host=args.host)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    server.web_app.add_routes([web.get("/healthz", healthz)])
    # access_log=None: no per-request log line (Bolt's default logging is quiet too).
    web.run_app(server.web_app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
