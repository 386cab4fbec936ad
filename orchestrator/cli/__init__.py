"""`orchestrator`: the one command-line entry (SPEC 6), and the composition
root: the only package that puts the core, the API layer, the webhooks and the
workers together (`app` for the web process, `dev` for one machine).

Provisioning commands print only the new id or key on stdout, so scripts can
capture it; everything else (errors, hints) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import redis

from orchestrator import provision
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.settings import ConfigError, Settings


def _fail(message: str) -> int:
    print(f"orchestrator: {message}", file=sys.stderr)
    return 2


def _redis() -> redis.Redis:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        raise ConfigError("REDIS_URL is required but not set")
    return redis.Redis.from_url(url)


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The twilio client logs every request's headers at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.cli.app import create_app

    settings = Settings.from_env()
    _logging()
    port = args.port or int(os.environ.get("PORT", "8000"))
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import run

    settings = Settings.from_env()
    _logging()
    run(redis.Redis.from_url(settings.redis_url), os.environ.get("LOG_LEVEL", "INFO").upper())
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from orchestrator.cli.dev import run

    return run(port=args.port)


def cmd_accounts_create(args: argparse.Namespace) -> int:
    print(provision.create_account(_redis(), args.name))
    return 0


def cmd_numbers_add(args: argparse.Namespace) -> int:
    try:
        e164 = normalise(args.number, os.environ.get("PHONE_DEFAULT_REGION", "US"))
    except InvalidPhoneNumber:
        return _fail(f"{args.number!r} is not a valid phone number")
    print(provision.add_number(_redis(), e164, args.account))
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    if "@" not in args.email:
        return _fail(f"{args.email!r} is not an email address")
    print(provision.add_user(_redis(), args.email, args.account, args.name, args.avatar))
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    print(provision.create_key(_redis(), args.account, args.role, args.user))
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """One `id roles user` line per key (`-` for a key that acts as no user),
    so an operator can find the id to revoke."""
    for key in provision.list_keys(_redis(), args.account):
        print(key.id, ",".join(key.roles), key.user_id or "-")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    print(provision.revoke_key(_redis(), args.key_id))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run everything locally: Redis, Twilio emulator, web, worker")
    dev.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
    dev.set_defaults(func=cmd_dev)

    web = sub.add_parser("web", help="serve the API and webhooks (uvicorn)")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="run a dial worker (RQ, no fork per job)")
    worker.set_defaults(func=cmd_worker)

    accounts = sub.add_parser("accounts").add_subparsers(dest="action", required=True)
    create = accounts.add_parser("create", help="create an account; prints its id")
    create.add_argument("name")
    create.set_defaults(func=cmd_accounts_create)

    numbers = sub.add_parser("numbers").add_subparsers(dest="action", required=True)
    add = numbers.add_parser("add", help="give an account a phone number; prints it (E.164)")
    add.add_argument("number")
    add.add_argument("--account", required=True)
    add.set_defaults(func=cmd_numbers_add)

    users = sub.add_parser("users").add_subparsers(dest="action", required=True)
    uadd = users.add_parser("add", help="add a user (a Twilio Client identity); prints its id")
    uadd.add_argument("email")
    uadd.add_argument("--account", required=True)
    uadd.add_argument("--name")
    uadd.add_argument("--avatar", metavar="URL")
    uadd.set_defaults(func=cmd_users_add)

    keys = sub.add_parser("keys").add_subparsers(dest="action", required=True)
    kcreate = keys.add_parser("create", help="create an API key; prints it (shown only once)")
    kcreate.add_argument("--account", required=True)
    kcreate.add_argument(
        "--role", action="append", required=True, help="User (the API) or Admin; repeatable"
    )
    kcreate.add_argument("--user", metavar="USER_ID", help="act as this user (id or email)")
    kcreate.set_defaults(func=cmd_keys_create)
    klist = keys.add_parser("list", help="list an account's keys: id, roles, user")
    klist.add_argument("--account", required=True)
    klist.set_defaults(func=cmd_keys_list)
    krevoke = keys.add_parser("revoke", help="revoke a key by its id; refused within a second")
    krevoke.add_argument("key_id", metavar="KEY_ID")
    krevoke.set_defaults(func=cmd_keys_revoke)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(str(exc))
    except provision.ProvisionError as exc:
        return _fail(str(exc))
    except redis.ConnectionError as exc:
        return _fail(f"cannot reach Redis: {exc}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
