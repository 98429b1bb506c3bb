"""Command line: python3 -m aleph_asgi --app module:app --app-dir DIR [--host H] [--port P]."""

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import os
import sys

from .errors import AppLoadError
from .limits import Limits
from .loader import load_app
from .proxy import Trusted
from .server import serve

EXIT_BAD_APP = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m aleph_asgi", description="Serve an ASGI 3 application.")
    parser.add_argument("--app", required=True, help="module:attribute of the ASGI application, e.g. main:app")
    parser.add_argument("--app-dir", default=".", help="folder put first on sys.path (default: .)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="override one of the limits in aleph_asgi/limits.py, e.g. keep_alive_timeout=2")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="level of the server's own logger (the app's logging is the app's)")
    parser.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                        metavar="IPS",
                        help="peers whose X-Forwarded-Proto/-For/-Prefix are believed: comma-separated addresses, "
                             "or * for any (default: $FORWARDED_ALLOW_IPS, as uvicorn, else 127.0.0.1: the node "
                             "under the process driver; the VM init sets the gateway)")
    return parser.parse_args(argv)


def parse_limits(pairs: list[str]) -> Limits:
    fields = {field.name: field.type for field in dataclasses.fields(Limits)}
    values: dict[str, float | int] = {}
    for pair in pairs:
        name, equals, raw = pair.partition("=")
        if not equals or name not in fields:
            raise ValueError(f"unknown limit {name!r}; known: {', '.join(fields)}")
        kind = int if fields[name] in (int, "int") else float
        value = kind(raw)
        if value < 0:
            raise ValueError(f"limit {name} must not be negative")
        values[name] = value
    return Limits(**values)


def own_logger(level: str) -> logging.Logger:
    """Our lines go to stderr through the `aleph_asgi` logger only: the root logger and
    every other one stay unconfigured, so the app's own logging setup works as under uvicorn."""
    log = logging.getLogger("aleph_asgi")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aleph_asgi: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # an app's root handler must not print our lines a second time
    return log


def parse_trusted(value: str) -> Trusted:
    addresses = {part.strip() for part in value.split(",") if part.strip()}
    if not addresses:
        raise ValueError("--forwarded-allow-ips needs at least one address, or *")
    for address in addresses - {"*"}:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"--forwarded-allow-ips: {address!r} is not an IP address") from None
    return Trusted(addresses)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    log = own_logger(args.log_level.upper())
    if not 0 <= args.port <= 65535:
        log.error("--port must be 0..65535")
        return EXIT_BAD_APP
    try:
        limits = parse_limits(args.limit)
        trusted = parse_trusted(args.forwarded_allow_ips)
        app = load_app(args.app, args.app_dir)
    except (AppLoadError, ValueError) as error:
        log.error("%s", error)
        return EXIT_BAD_APP
    return asyncio.run(serve(app, args.host, args.port, limits, trusted=trusted))


if __name__ == "__main__":
    sys.exit(main())
