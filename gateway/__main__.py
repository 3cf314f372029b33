"""python -m tritone.gateway [--host H] [--port P]   (settings also from TRITONE_* environment variables)"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from tritone.gateway.database import Database, DatabaseUnreachable
from tritone.gateway.main import create_app
from tritone.gateway.settings import Settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tritone.gateway", description="tritone HTTP gateway")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--triton-grpc-url")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    settings = Settings(**overrides)
    database = Database.for_settings(settings)
    try:  # before anything else: an unreachable database is one clear line and a non-zero exit
        database.migrate()
    except DatabaseUnreachable as error:
        sys.exit(f"tritone gateway: {error}")
    finally:
        database.close()
    # proxy_headers off: the app trusts X-Forwarded-For only from settings.forwarded_allow_ips (uvicorn's default
    # would trust 127.0.0.1, so anyone behind a local port-forward could name any client address)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", proxy_headers=False,
                timeout_graceful_shutdown=settings.drain_s)


if __name__ == "__main__":
    main()
