"""`bas web`: the web console (Starlette, Jinja2 templates, htmx served from 'self').

A top-level front end like the CLI: it reads the state store through provisioner.service.
Login is OpenID Connect (provisioner.web.oidc), sessions are kept server-side
(provisioner.web.sessions) and every route declares who may reach it
(provisioner.web.access).
"""
