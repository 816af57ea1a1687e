"""`bas web`: serve the web console (provisioner.web) with uvicorn.

Kept apart from provisioner/cli/main.py like the other command modules; it gets the CLI's
lazily loaded context (config, state store) as ``click.pass_obj``.
"""

from __future__ import annotations

from typing import Any

import click

from provisioner import config as config_mod
from provisioner.cli.common import fail

# seconds a stop waits for requests in flight
STOP_GRACE_SECONDS = 5


@click.command("web")
@click.pass_obj
def web_command(c: Any) -> None:
    """Serve the web console ([web] in the config: listen, public_url, TLS, OpenID Connect, roles)."""
    import uvicorn

    from provisioner.web.app import create_app
    from provisioner.web.oidc import Provider

    cfg = c.cfg
    w = cfg.web
    problems = w.missing()
    if problems:
        fail("\n".join(problems))
    try:
        secret = config_mod.read_secret(
            w.oidc.client_secret_file, cfg.base_dir, "web.oidc.client_secret_file"
        )
    except config_mod.ConfigError as exc:
        fail(str(exc))
    ca = str(cfg.path(w.oidc.ca_file)) if w.oidc.ca_file else None
    provider = Provider(w.oidc, secret, w.public_url + "/auth/callback", ca)
    app = create_app(cfg, c.store, provider)
    host, port = w.host_port
    tls: dict[str, Any] = {}
    if w.tls_cert_file and w.tls_key_file:
        tls = {"ssl_certfile": str(cfg.path(w.tls_cert_file)), "ssl_keyfile": str(cfg.path(w.tls_key_file))}
    click.echo(
        f"bas web: listening on {'https' if tls else 'http'}://{host}:{port}, public URL {w.public_url}"
    )
    # No access log: the callback's query string holds the authorization code. A stop
    # (SIGTERM, `systemctl stop`) waits at most a few seconds for requests in flight (a
    # changelog download) before it closes them.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=STOP_GRACE_SECONDS,
        **tls,
    )
