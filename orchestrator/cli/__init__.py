"""`orchestrator`: the one command-line entry (SPEC 6), and the composition
root: the only package that puts the core, the API layer, the webhooks and the
workers together (`app` for the web process, `dev` for one machine).

Provisioning commands print only the new id or key on stdout, so scripts can
capture it; everything else (errors, hints) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging.config
import os
import sys

import redis

from orchestrator import logs, provision, redis_client
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.settings import ConfigError, Settings


def _fail(message: str) -> int:
    print(f"orchestrator: {message}", file=sys.stderr)
    return 2


def _redis() -> redis.Redis:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        raise ConfigError("REDIS_URL is required but not set")
    try:
        return redis_client.connect_sync(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _metrics(settings: Settings) -> None:
    """Point prometheus_client at this machine's metrics directory (multiprocess mode):
    before anything imports it, since it picks its mode at import."""
    path = settings.metrics_dir
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"METRICS_DIR {path}: cannot create it ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"METRICS_DIR {path}: not a directory this process can write to")
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("prometheus_client was imported before its directory was set")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers < 1:
        return _fail("--workers must be 1 or more")
    settings = Settings.from_env()
    _metrics(settings)
    log_config = logs.config(settings.log_format, settings.log_level)
    logging.config.dictConfig(log_config)
    port = args.port or int(os.environ.get("PORT", "8000"))
    app: object = "orchestrator.cli.app:create_app"
    if args.workers == 1:
        from orchestrator.cli.app import create_app

        app = create_app(settings)
    # Else each of uvicorn's processes imports the app and reads the same environment (it
    # spawns them): the metrics directory set above is theirs too, and log_config their logs.
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=port,
        log_config=log_config,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    _metrics(settings)
    logging.config.dictConfig(logs.config(settings.log_format, settings.log_level))
    from workers.worker import run

    run(settings.redis_url, settings.log_level)
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
    web.add_argument(
        "--workers", type=int, default=1, help="web processes sharing the port (default 1)"
    )
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
