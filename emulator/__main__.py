"""Command line: ``python -m emulator --port 8100 --account-sid AC... --auth-token TOKEN``.

Flags win over the environment; ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` and
``EMULATOR_VOICE_URL`` fill in what is not given, so the emulator can share the app's env file.

The public port is served by ``emulator.front.ResetFront``, a byte-forwarding TCP front to
uvicorn on an internal loopback port, so that fault ``mode=reset`` can reset connections.
``--no-front`` serves uvicorn directly on the port instead (``mode=reset`` then answers 502).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette

from emulator.app import create_app
from emulator.front import serve_behind_front


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse flags, falling back to the environment for credentials and the voice URL."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Twilio REST emulator that plays calls through signed webhooks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--account-sid",
        default=os.environ.get("TWILIO_ACCOUNT_SID"),
        help="account sid clients must authenticate as (env TWILIO_ACCOUNT_SID)",
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="auth token for Basic auth and webhook signatures (env TWILIO_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--voice-url",
        default=os.environ.get("EMULATOR_VOICE_URL") or None,
        help="TwiML app URL for /_emulator/incoming calls (env EMULATOR_VOICE_URL)",
    )
    parser.add_argument(
        "--ring-seconds",
        type=float,
        default=0.2,
        help="how long a callee rings before answering or being busy (default 0.2)",
    )
    parser.add_argument(
        "--no-answer-seconds",
        type=float,
        default=1.0,
        help="how long an unanswered callee rings before no-answer (default 1.0)",
    )
    parser.add_argument(
        "--no-front",
        action="store_true",
        help="serve uvicorn directly on --port, without the TCP front that fault mode=reset"
        " needs (mode=reset then answers 502)",
    )
    args = parser.parse_args(argv)
    if not args.account_sid:
        parser.error("--account-sid (or TWILIO_ACCOUNT_SID) is required")
    if not args.auth_token:
        parser.error("--auth-token (or TWILIO_AUTH_TOKEN) is required")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator under uvicorn until interrupted."""
    args = parse_args(argv)
    # Dropped or failing webhooks are logged as warnings; keep them visible and readable.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    def make_app(reset_connection: Callable[[Any], bool] | None = None) -> Starlette:
        return create_app(
            args.account_sid,
            args.auth_token,
            voice_url=args.voice_url,
            ring_seconds=args.ring_seconds,
            no_answer_seconds=args.no_answer_seconds,
            reset_connection=reset_connection,
        )

    print(
        f"twilio emulator: http://{args.host}:{args.port}/2010-04-01/Accounts/{args.account_sid}"
        f" (voice URL: {args.voice_url or 'none'})",
        file=sys.stderr,
        flush=True,
    )
    if args.no_front:
        uvicorn.run(make_app(), host=args.host, port=args.port, log_level="warning")
        return
    try:
        # uvicorn re-raises the Ctrl-C it handled once it has shut down; exit quietly.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_behind_front(make_app, args.host, args.port))
    except OSError as exc:  # the port is taken or the host is not ours, as uvicorn reports it
        sys.exit(f"ERROR: {exc}")


if __name__ == "__main__":
    main()
