"""The ``fhir-server`` command: ``serve``, ``import`` (``load``), ``token``, ``copy-database`` and ``package``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from fhir_server.config import Settings, load_settings

log = logging.getLogger("fhir_server.cli")


def _data_folders(settings: Settings) -> list[Path]:
    """The data folders the settings name; exits with a clear message when one is missing."""
    from fhir_server.data import require_data_folders

    try:
        return require_data_folders(settings.data_dir)
    except FileNotFoundError as error:
        raise SystemExit(f"fhir-server: {error}") from error


def _make_sqlite_directory(database_url: str) -> None:
    """A SQLite database file's directory (e.g. the per-user one) is created; SQLite does not."""
    from sqlalchemy.engine import make_url

    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from fhir_server.app import create_app
    from fhir_server.logging_setup import MaskIdentityNumbers

    settings = load_settings(
        args.config,
        database_url=args.database_url,
        base_url=args.base_url,
        test_mode=True if args.test_mode else None,
        auth_mode="development" if args.dev else None,
        data_dir=args.data_dir,
    )
    from fhir_server.security.gate import describe_mode, require_trusted_issuer

    require_trusted_issuer(settings)  # production mode does not start without an issuer and its keys
    folders = _data_folders(settings)
    _make_sqlite_directory(settings.database_url)
    # create/upgrade the schema and load the data folders once, before the workers start
    from fhir_server.components import build_server
    from fhir_server.core.conformance.seed import seed, seed_conformance

    prepared = build_server(settings)
    report = seed(prepared.service, folders)
    packages = seed_conformance(prepared.service, prepared.conformance)
    report.written += packages.written
    report.unchanged += packages.unchanged
    report.refused += packages.refused
    print(
        f"fhir-server: data folders loaded ({report.written} written, {report.unchanged} unchanged, "
        f"{len(report.refused)} refused)",
        file=sys.stderr,
    )
    prepared.db.dispose()

    class MaskingLogger(Logger):
        """gunicorn's logger with identity numbers masked (access log lines carry query strings)."""

        def setup(self, cfg) -> None:  # type: ignore[no-untyped-def]
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                for handler in logger.handlers:
                    handler.addFilter(MaskIdentityNumbers())

    class Application(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("worker_class", "gthread" if args.threads > 1 else "sync")
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("logger_class", MaskingLogger)
            if args.access_log:
                self.cfg.set("accesslog", "-")

        def load(self):  # type: ignore[no-untyped-def]
            return create_app(settings)

    print(
        f"fhir-server: serving http://{args.host}:{args.port}{settings.base_path} "
        f"({args.workers} workers) on {settings.database_url.split('@')[-1]}",
        file=sys.stderr,
    )
    print(f"fhir-server: {describe_mode(settings)}", file=sys.stderr)
    Application().run()
    return 0


def _import(args: argparse.Namespace) -> int:
    from fhir_server.bulk_import.runner import CannotImport, ImportOptions, import_paths

    settings = load_settings(args.config, database_url=args.database_url, data_dir=args.data_dir)
    _data_folders(settings)
    _make_sqlite_directory(settings.database_url)
    options = ImportOptions(
        batch_size=args.batch_size, report=Path(args.report) if args.report else None, progress=not args.quiet
    )
    try:
        summary = import_paths([Path(p) for p in args.paths], settings, options, resume=args.resume)
    except CannotImport as error:
        raise SystemExit(f"fhir-server: {error}") from error
    print(summary.report())
    return 0 if summary.refused == 0 else 1


def _token(args: argparse.Namespace) -> int:
    from fhir_server.security.dev_issuer import mint

    settings = load_settings(args.config)
    scopes = [s for item in args.scope for s in item.split()]
    print(
        mint(
            args.key or settings.dev_key_path,
            scopes=scopes,
            organisation=args.org,
            sub_organisation=args.sub_org,
            audience=args.audience or settings.auth_audience,
            client_id=args.client_id,
            client_name=args.client_name,
            lifetime_seconds=args.lifetime,
        )
    )
    return 0


def _package(args: argparse.Namespace) -> int:
    from fhir_server.core.conformance.package_builder import build_package

    settings = load_settings(args.config, data_dir=args.data_dir)
    try:
        built = build_package(Path(args.out), version=args.version, folders=_data_folders(settings))
    except FileNotFoundError as error:
        raise SystemExit(f"fhir-server: {error}") from error
    print(f"wrote {built.path} with {built.files} resources")
    return 0


def _copy_database(args: argparse.Namespace) -> int:
    from fhir_server.components import database_schemas
    from fhir_server.core.storage.copy_database import CannotCopy, copy_database

    _make_sqlite_directory(args.target)
    try:
        report = copy_database(args.source, args.target, schemas=database_schemas(), progress=not args.quiet)
    except CannotCopy as error:
        raise SystemExit(f"fhir-server: {error}") from error
    print(report.summary())
    return 0


DATA_DIR_HELP = "a directory with profiles/, terminology/, mappings/, pathways/ (default: the shipped data)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server for Norwegian referrals")
    parser.add_argument("--config", help="a JSON settings file (see README)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (gunicorn)")
    serve.add_argument("--host", default=os.environ.get("FHIR_SERVER_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("FHIR_SERVER_PORT", "8080")))
    serve.add_argument("--database-url", help="sqlite:///path or postgresql://user@host:port/db")
    serve.add_argument("--base-url", help="external base URL, e.g. https://fhir.example.no/fhir")
    serve.add_argument("--workers", type=int, default=int(os.environ.get("FHIR_SERVER_WORKERS", "2")))
    serve.add_argument("--threads", type=int, default=int(os.environ.get("FHIR_SERVER_THREADS", "4")))
    serve.add_argument("--test-mode", action="store_true", help="accept synthetic (Tenor) identity numbers")
    serve.add_argument("--access-log", action="store_true", help="log every request (identity numbers masked)")
    serve.add_argument(
        "--dev", action="store_true", help="development mode: trust the local test issuer (`fhir-server token`)"
    )
    serve.add_argument("--data-dir", help=DATA_DIR_HELP)
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="mint a development-mode access token (HelseID-style claims)")
    token.add_argument("--scope", action="append", default=[], help="e.g. 'system/ServiceRequest.cruds' (repeatable)")
    token.add_argument("--org", help="the client's organisation number (orgnr_parent)")
    token.add_argument("--sub-org", help="a sub-unit's organisation number (orgnr_child)")
    token.add_argument("--client-id", default="dev-client")
    token.add_argument("--client-name")
    token.add_argument("--audience", help="default: the configured audience (referral-hub)")
    token.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--key", help="the development key file (default: the configured dev_key_path)")
    token.set_defaults(func=_token)

    for name, text in (
        ("import", "bulk import: NDJSON files (one resource a line) and Bundle files, many resources a transaction"),
        ("load", "the same as import (kept for existing scripts)"),
    ):
        bulk = sub.add_parser(name, help=text)
        bulk.add_argument("paths", nargs="*", help="NDJSON, JSON or XML files, or folders of them")
        bulk.add_argument("--database-url", help="the database to import into")
        bulk.add_argument("--resume", metavar="JOB", help="go on with an unfinished import job")
        bulk.add_argument("--batch-size", type=int, default=500, help="lines per database transaction (500)")
        bulk.add_argument("--report", help="append what was refused to this NDJSON file")
        bulk.add_argument("--quiet", action="store_true", help="no progress bar")
        bulk.add_argument("--data-dir", help=DATA_DIR_HELP)
        bulk.set_defaults(func=_import)

    copy = sub.add_parser(
        "copy-database",
        help="copy every row of a database into a new one (e.g. from the embedded SQLite to PostgreSQL); "
        "stop the servers first",
    )
    copy.add_argument("source", help="sqlite:///path or postgresql://user@host:port/db")
    copy.add_argument("target", help="an empty database (created and given the schema when new)")
    copy.add_argument("--quiet", action="store_true", help="no progress bars")
    copy.set_defaults(func=_copy_database)

    package = sub.add_parser("package", help="build a FHIR package (.tgz) of the project's conformance resources")
    package.add_argument("--out", default="dist/no.referral-hub.fhir.tgz")
    package.add_argument("--version", default="0.1.0")
    package.add_argument("--data-dir", help=DATA_DIR_HELP)
    package.set_defaults(func=_package)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fhir_server.logging_setup import configure_logging

    configure_logging("WARNING" if args.command in ("import", "load", "token", "copy-database") else "INFO")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
