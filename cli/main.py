"""The `numbase` console script: thin wrappers over the packages."""

from __future__ import annotations

import argparse
import sys

from models.settings import SettingsError


def _cmd_db(args: argparse.Namespace) -> int:
    from models import migrate
    from models.db import database_for_command

    with database_for_command() as url:
        return _db_action(args, url, migrate)


def _db_action(args: argparse.Namespace, url: str, migrate) -> int:  # type: ignore[no-untyped-def]
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "base")
    elif args.action == "check":
        migrate.check(url)
    elif args.action == "current":
        print(migrate.current_revision(url) or "(empty database)")
    elif args.action == "url":
        print(url)
    return 0


def _cmd_create_user(args: argparse.Namespace) -> int:
    from cli.users import DatabaseNotReady, create_user
    from models.db import database_for_command
    from models.settings import get_settings

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass("Password: ")
    try:
        with database_for_command() as url:
            user_id = create_user(url, args.username, password, args.role, args.email)
    except DatabaseNotReady as exc:
        print(f"numbase create-user: {exc}", file=sys.stderr)
        settings = get_settings()
        if settings.embedded_database:  # the usual cause: another folder than `numbase up`'s
            print(
                f"  (the embedded PostgreSQL of NUMBASE_DATA_DIR={settings.data_dir.resolve()}; "
                "is that the folder `numbase up` uses?)",
                file=sys.stderr,
            )
        return 2
    except ValueError as exc:
        print(f"numbase create-user: {exc}", file=sys.stderr)
        return 2
    print(f"created {args.role} {args.username!r} (id {user_id})")
    return 0


def _cmd_prune(_: argparse.Namespace) -> int:
    import datetime as dt

    from models.db import database_for_command, make_engine
    from models.maintenance import prune_auth_tables
    from models.settings import get_settings

    window = dt.timedelta(seconds=get_settings().login_window_seconds)
    with database_for_command() as url:
        engine = make_engine(url, pool_size=None)
        with engine.begin() as conn:
            removed = prune_auth_tables(conn, failures_older_than=window)
        engine.dispose()
    print(", ".join(f"{table}: {n} removed" for table, n in removed.items()))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from cli.up import run_platform

    return run_platform(demo=args.demo, with_dagster=not args.no_dagster)


def _cmd_demo(_: argparse.Namespace) -> int:
    from cli.demo import DemoError, seed_demo
    from models.db import database_for_command
    from models.settings import get_settings

    try:
        with database_for_command() as url:
            seed_demo(get_settings(), url, sftp_wait=3.0)
    except DemoError as exc:
        print(f"numbase demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_registry(args: argparse.Namespace) -> int:
    from cli.registry import load_files
    from models.db import database_for_command

    with database_for_command() as url:
        return load_files(url, args.files, show_progress=sys.stderr.isatty())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numbase", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "check", "current", "url"])
    db.add_argument("revision", nargs="?", help="target revision (default head / base)")
    db.set_defaults(func=_cmd_db)

    cu = sub.add_parser("create-user", help="create a user (e.g. the first admin)")
    cu.add_argument("--username", required=True)
    cu.add_argument("--email", required=True)
    cu.add_argument("--role", choices=["admin", "manager"], default="manager")
    cu.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    cu.set_defaults(func=_cmd_create_user)

    prune = sub.add_parser("prune", help="delete expired revoked tokens and old login failures")
    prune.set_defaults(func=_cmd_prune)

    up = sub.add_parser("up", help="run the whole platform locally until Ctrl-C")
    up.add_argument("--demo", action="store_true", help="seed demo data and a sample SFTP file")
    up.add_argument("--no-dagster", action="store_true", help="run without Dagster")
    up.set_defaults(func=_cmd_up)

    demo = sub.add_parser(
        "demo", help="seed a demo project and drop a sample file into a running platform's inbox"
    )
    demo.set_defaults(func=_cmd_demo)

    registry = sub.add_parser(
        "registry", help="the numbering-plan registry (docs/dialing-rules.md)"
    )
    registry.add_argument("action", choices=["load"])
    registry.add_argument("files", nargs="+", metavar="FILE", help="registry extracts (CSV)")
    registry.set_defaults(func=_cmd_registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"numbase: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
