"""Run Acme: ``python -m acme --port 8000`` from examples/acme."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from acme.app import create_app
from acme.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acme")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"acme: refusing to start: {error}", file=sys.stderr)
        return 2
    if settings.flaw == "key-at-startup":
        print(f"acme: loaded token key {settings.key.hex()}", flush=True)

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
