"""`orchestrator`: run and provision the conference orchestrator.

`web` serves the API and Twilio's webhooks, `worker` dials and settles calls,
`dev` runs the whole service on this machine with nothing to set up,
`accounts`, `numbers`, `users`, `queues` and `keys` provision what the API serves, and
`twilio setup` makes the Twilio account ready for it.

This package is also the composition root: the only one that puts the core, the
API layer, the webhooks and the workers together (`app` for the web process,
`dev` for one machine).

Provisioning commands print only the new id or key on stdout, so scripts can
capture it; everything else (errors, hints) goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.config
import math
import os
import shlex
import sys
from collections.abc import Callable

import redis

from orchestrator import dial_policy, logs, provision, redis_client
from orchestrator.api.authn import USER_ROLE
from orchestrator.launch import wait_until
from orchestrator.phone import InvalidPhoneNumber, normalise
from orchestrator.redis_client import REDIS_ERRORS
from orchestrator.settings import ConfigError, Settings

# The roles an API key can carry, by their names in any case: USER_ROLE is what every API
# operation asks for, and Admin passes every role check, as in ServiceStack
# (orchestrator/apikeys.py). A key with any other role would be refused by every request.
ROLES = {name.lower(): name for name in (USER_ROLE, "Admin")}
ROLE_HELP = "User (the API) or Admin (passes every role check); any case (user = User)"

# What `web --help` and `worker --help` list: both read the same settings at start.
SETTINGS_HELP = """\
settings (environment variables), read at start; all missing or malformed ones
are named in one run:
  required
    REDIS_URL            redis://, rediss://, unix:// or redis+sentinel:// URL
    TWILIO_ACCOUNT_SID   AC followed by 32 hex digits
    TWILIO_AUTH_TOKEN    signs the REST requests, checks the webhooks' signatures
    PUBLIC_BASE_URL      the URL Twilio reaches this service at (webhooks)
  main optional ones (defaults in brackets)
    PORT                       the web process's port [8000]
    TWILIO_API_BASE_URL        Twilio's REST API [https://api.twilio.com]
    DEFAULT_CALLER_ID          caller id of dials the session does not give one
    PHONE_DEFAULT_REGION       region of numbers given without +country [US]
    DIAL_COUNTRIES             countries dials may reach, e.g. US,CA, unless the
                               account has its own [PHONE_DEFAULT_REGION]
    TWILIO_CPS                 dials per second, across all workers [1]
    DIAL_RETRY_BACKOFF         seconds between a dial's retries [0,2,4,8,16,30]
    DIAL_JOB_TIMEOUT           seconds one dial attempt may take [30]
    HOLD_MUSIC_URL             what a held member hears [Twilio's hold music]
    LOG_FORMAT, LOG_LEVEL      text or json [text]; DEBUG..CRITICAL [INFO]
    METRICS_DIR                this machine's shared metrics directory [a temp dir]
    REDIS_MIN_REPLICAS         replicas that must have each change [0]
    REDIS_WAIT_TIMEOUT_MS      how long to wait for them before a 503 [1000]
    EVENT_HEARTBEAT_SECONDS    keep-alive of idle event streams [15]
    EVENT_BUFFER               events a stream may fall behind [1000]
    SESSION_RETENTION_SECONDS, EVENT_RETENTION_SECONDS  [604800, 3600]
    TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET  the API key (SK...) that signs agents'
                               access tokens (GetAppConfig answers 503 without them)
    TWILIO_TWIML_APP_SID       the TwiML App (AP...) of agents' softphones; these three
                               are what `orchestrator twilio setup` prints
    ACCESS_TOKEN_TTL           seconds an agent's access token lives [3600]

Redis unreachable at start or later: no process exits. The web process listens
and answers 503 with Retry-After (and /ready says not ready) until Redis answers;
a worker logs that it waits for Redis and starts taking jobs once it answers. A
platform that starts Redis and the service together needs no start order.
To try the service on this machine with nothing set: `orchestrator dev`.
"""

web_log = logging.getLogger("orchestrator.web")
worker_log = logging.getLogger("orchestrator.worker")


def _role(name: str) -> str:
    """A role's canonical name, whatever its case; refused (exit 2) before the key exists."""
    role = ROLES.get(name.strip().lower())
    if role is None:
        accepted = " and ".join(ROLES.values())
        raise argparse.ArgumentTypeError(
            f"unknown role {name!r}: the roles are {accepted} (case does not matter)"
        )
    return role


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
    config = uvicorn.Config(
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
    url = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{port}"

    class _Server(uvicorn.Server):
        """uvicorn's server, which says where it listens once it does (uvicorn's own
        start-up lines are held back with the rest of its routine)."""

        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                web_log.info("listening on %s", url)

    try:
        if args.workers == 1:
            server = _Server(config)
            server.run()
            return 0 if server.started else 3  # uvicorn logged why (a port taken, ...)
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        web_log.info("listening on %s (%d processes)", url, args.workers)
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    _metrics(settings)
    logging.config.dictConfig(logs.config(settings.log_format, settings.log_level))
    from workers.worker import run

    _wait_for_redis(settings.redis_url)
    run(settings.redis_url, settings.log_level)
    return 0


def _wait_for_redis(url: str) -> None:
    """Until Redis answers, saying once that the worker waits for it: a worker started
    with (or before) its Redis waits, as the web process does, rather than exiting."""
    client = redis_client.connect_sync(url, socket_connect_timeout=2, socket_timeout=2)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except REDIS_ERRORS:
            return False

    try:
        try:
            client.ping()
            return
        except REDIS_ERRORS as exc:
            where = redis_client.display_url(url)
            worker_log.warning("Redis at %s does not answer (%s); waiting for it", where, exc)
        wait_until(answers, math.inf, "Redis", interval=1.0)
        worker_log.info("Redis at %s answers; starting", where)
    finally:
        client.close()


def cmd_dev(args: argparse.Namespace) -> int:
    from orchestrator.cli.dev import run

    return run(port=args.port)


def cmd_accounts_create(args: argparse.Namespace) -> int:
    print(provision.create_account(_redis(), args.name))
    return 0


def _dial_countries(text: str) -> tuple[str, ...] | None:
    """`--dial-countries`: codes such as US,CA (any case), or `default` for DIAL_COUNTRIES;
    refused (exit 2) before anything is stored."""
    if text.strip().lower() == "default":
        return None
    try:
        return dial_policy.parse_countries(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or `default` for DIAL_COUNTRIES") from None


def cmd_accounts_update(args: argparse.Namespace) -> int:
    print(provision.set_dial_countries(_redis(), args.account, args.dial_countries))
    return 0


def _region() -> str:
    return os.environ.get("PHONE_DEFAULT_REGION", "US")


def cmd_numbers_add(args: argparse.Namespace) -> int:
    try:
        e164 = normalise(args.number, _region())
    except InvalidPhoneNumber:
        return _fail(f"{args.number!r} is not a valid phone number")
    print(provision.add_number(_redis(), e164, args.account, args.queue))
    return 0


def cmd_queues_create(args: argparse.Namespace) -> int:
    # Each QueueSettings field is the option of its name (ring_timeout: --ring-timeout).
    settings = provision.QueueSettings(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(provision.QueueSettings)}
    )
    print(provision.create_queue(_redis(), args.account, args.name, settings, _region()))
    return 0


def cmd_queues_add(args: argparse.Namespace) -> int:
    print(provision.add_agent(_redis(), args.queue, args.user))
    return 0


def cmd_queues_remove(args: argparse.Namespace) -> int:
    uid, removed = provision.remove_agent(_redis(), args.queue, args.user)
    if not removed:
        print(f"orchestrator: {uid} was not an agent of {args.queue}", file=sys.stderr)
    print(uid)
    return 0


def cmd_queues_list(args: argparse.Namespace) -> int:
    """One line per queue, oldest first: id, name (quoted as a shell would need it),
    strategy, timings, overflow (`-` for none), calls waiting, and its agents in order
    as user:state(:busy), or `-` for none."""
    for q in provision.list_queues(_redis(), args.account):
        agents = ",".join(
            f"{a.user_id}:{a.agent_state}" + (":busy" if a.busy else "") for a in q.agents
        )
        print(
            q.id,
            shlex.quote(q.name),
            q.strategy,
            f"ring-timeout={q.ring_timeout}",
            f"max-wait={q.max_wait}",
            f"wrap-up={q.wrap_up}",
            f"max-misses={q.max_misses}",
            f"overflow={q.overflow or '-'}",
            f"waiting={len(q.waiting)}",
            f"agents={agents or '-'}",
        )
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


def cmd_twilio_setup(args: argparse.Namespace) -> int:
    """The settings on stdout, what changed on stderr; Twilio's refusal: one line, exit 1."""
    from orchestrator import twilio_setup

    try:
        made = twilio_setup.from_settings(Settings.from_env(), new_key=args.new_key)
    except twilio_setup.SetupError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1
    print(made.lines(), end="", flush=True)
    return 0


def _description() -> str:
    """The module's summary and its paragraph for operators."""
    summary, operators = (__doc__ or "").split("\n\n")[:2]
    summary = summary.split(": ", 1)[1]
    return f"{summary[0].upper()}{summary[1:]} {operators}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrator",
        description=_description(),
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, **kwargs: object) -> argparse.ArgumentParser:
        """A subcommand whose summary shows both in `orchestrator --help` and its own."""
        return sub.add_parser(name, help=summary, description=summary, **kwargs)

    def actions(name: str, summary: str) -> Callable[[str, str], argparse.ArgumentParser]:
        """A subcommand with actions of its own (`keys create`): a function adding one."""
        group = command(name, summary).add_subparsers(
            dest="action", required=True, metavar="ACTION"
        )
        return lambda action, help: group.add_parser(action, help=help, description=help)

    dev = command(
        "dev",
        "run the whole service on this machine with nothing to set up: Redis, the Twilio "
        "emulator, the web process and a worker, a demo account, and what to try",
    )
    dev.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
    dev.set_defaults(func=cmd_dev)

    raw = argparse.RawDescriptionHelpFormatter
    web = command(
        "web", "serve the API and Twilio's webhooks (uvicorn)", epilog=SETTINGS_HELP,
        formatter_class=raw,
    )  # fmt: skip
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    web.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    web.add_argument(
        "--workers", type=int, default=1, help="web processes sharing the port (default 1)"
    )
    web.set_defaults(func=cmd_web)

    worker = command(
        "worker", "dial members and apply hold, mute and hang-ups (an RQ worker, no fork per "
        "job); run as many as the dial rate needs", epilog=SETTINGS_HELP, formatter_class=raw,
    )  # fmt: skip
    worker.set_defaults(func=cmd_worker)

    accounts = actions(
        "accounts", "create and update accounts (what API keys, numbers and users belong to)"
    )
    create = accounts("create", "create an account; prints its id")
    create.add_argument("name")
    create.set_defaults(func=cmd_accounts_create)
    update = accounts("update", "change an account's settings; prints its id")
    update.add_argument("account", metavar="ACCOUNT", help="the account's id (acc_...)")
    update.add_argument(
        "--dial-countries", required=True, type=_dial_countries, metavar="CODES",
        help="the countries its dials may reach, e.g. US,CA (ISO 3166, any case), replacing "
        "DIAL_COUNTRIES for it; `default` goes back to DIAL_COUNTRIES",
    )  # fmt: skip
    update.set_defaults(func=cmd_accounts_update)

    numbers = actions("numbers", "give an account phone numbers its customers call")
    add = numbers("add", "give an account a phone number; prints it (E.164)")
    add.add_argument("number")
    add.add_argument("--account", required=True, help="the account's id (acc_...)")
    add.add_argument(
        "--queue", metavar="QUEUE", help="send its incoming calls to this ring queue of the "
        "account (que_...)",
    )  # fmt: skip
    add.set_defaults(func=cmd_numbers_add)

    queues = actions(
        "queues", "ring queues: hand incoming calls to the agents who are ready (docs/"
        "operations.md#ring-queues)",
    )  # fmt: skip
    qcreate = queues("create", "create a ring queue of an account; prints its id")
    qcreate.add_argument("name", metavar="NAME")
    qcreate.add_argument("--account", required=True, help="the account's id (acc_...)")
    settings = provision.QueueSettings()  # the options' defaults
    qcreate.add_argument(
        "--strategy", default=settings.strategy, choices=provision.STRATEGIES,
        help="who is offered a call: every free agent at once (ring-all, the default), one "
        "at a time in the order they were added (linear), one at a time after the agent "
        "who took the last call (round-robin), or the one idle longest (longest-idle)",
    )  # fmt: skip
    low, high = provision.RING_TIMEOUT_RANGE
    # Each option sets the QueueSettings field of its name (cmd_queues_create reads them so).
    for name, metavar, text in (
        ("ring_timeout", "S", f"seconds an offer rings before the next ({low}-{high}, "
         "default %(default)s)"),
        ("max_wait", "S", "seconds a call waits for an agent before it overflows or ends "
         "(default %(default)s)"),
        ("wrap_up", "S", "seconds an agent is in WrapUp after a queue call (default "
         "%(default)s)"),
        ("max_misses", "N", "offers an agent may miss in a row before going NotReady "
         "(default %(default)s)"),
    ):  # fmt: skip
        option, default = "--" + name.replace("_", "-"), getattr(settings, name)
        qcreate.add_argument(option, type=int, default=default, metavar=metavar, help=text)
    qcreate.add_argument(
        "--overflow", metavar="NUMBER_OR_USER",
        help="where a call goes when nobody takes it in time: a phone number, or a user of "
        "the account (id or email); none: the call ends, missed",
    )  # fmt: skip
    qcreate.set_defaults(func=cmd_queues_create)
    qadd = queues("add", "make a user an agent of a queue (after the others); prints the user id")
    qadd.set_defaults(func=cmd_queues_add)
    qremove = queues("remove", "a user is no longer an agent of a queue; prints the user id")
    qremove.set_defaults(func=cmd_queues_remove)
    for agent in (qadd, qremove):
        agent.add_argument("queue", metavar="QUEUE", help="the queue's id (que_...)")
        agent.add_argument(
            "user", metavar="USER", help="a user of the queue's account: id or email"
        )
    qlist = queues(
        "list", "list an account's queues: id, name, strategy, timings, overflow, calls "
        "waiting, agents as user:state",
    )  # fmt: skip
    qlist.add_argument("--account", required=True, help="the account's id (acc_...)")
    qlist.set_defaults(func=cmd_queues_list)

    users = actions("users", "add an account's users (agents, Twilio Client identities)")
    uadd = users("add", "add a user (a Twilio Client identity); prints its id")
    uadd.add_argument("email")
    uadd.add_argument("--account", required=True, help="the account's id (acc_...)")
    uadd.add_argument("--name")
    uadd.add_argument("--avatar", metavar="URL")
    uadd.set_defaults(func=cmd_users_add)

    keys = actions("keys", "create, list and revoke an account's API keys")
    kcreate = keys("create", "create an API key; prints it (shown only once)")
    kcreate.add_argument("--account", required=True, help="the account's id (acc_...)")
    kcreate.add_argument(
        "--role", action="append", required=True, type=_role, help=ROLE_HELP + "; repeatable"
    )
    kcreate.add_argument("--user", metavar="USER_ID", help="act as this user (id or email)")
    kcreate.set_defaults(func=cmd_keys_create)
    klist = keys("list", "list an account's keys: id, roles, user")
    klist.add_argument("--account", required=True, help="the account's id (acc_...)")
    klist.set_defaults(func=cmd_keys_list)
    krevoke = keys("revoke", "revoke a key by its id; refused within a second")
    krevoke.add_argument("key_id", metavar="KEY_ID")
    krevoke.set_defaults(func=cmd_keys_revoke)
    twilio = actions("twilio", "make the Twilio account ready for the service")
    tsetup = twilio(
        "setup",
        "make (or find) an API key and a TwiML App, point the numbers the service knows at "
        "its voice webhook, and print TWILIO_API_KEY_SID, TWILIO_API_KEY_SECRET and "
        "TWILIO_TWIML_APP_SID; run again, it changes nothing (docs/operations.md)",
    )
    tsetup.add_argument(
        "--new-key", action="store_true",
        help="make a new API key even if the settings name one Twilio still has (a key's "
        "secret cannot be read back); the old key keeps working until deleted at Twilio",
    )  # fmt: skip
    tsetup.set_defaults(func=cmd_twilio_setup)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"orchestrator: {problem}", file=sys.stderr)
        if exc.missing and args.command in ("web", "worker"):
            print(
                f"orchestrator: `orchestrator {args.command} --help` lists the settings; "
                "`orchestrator dev` runs the whole service on this machine with none set",
                file=sys.stderr,
            )
        return 2
    except provision.ProvisionError as exc:
        return _fail(str(exc))
    except redis.ConnectionError as exc:
        return _fail(f"cannot reach Redis: {exc}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
