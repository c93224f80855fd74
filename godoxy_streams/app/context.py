"""The operator settings the label grammar reads (``labels.ParseContext``), made in one place
for every command that parses labels (``run``, ``check``)."""

from __future__ import annotations

from typing import Any

from godoxy_streams.labels import ParseContext
from godoxy_streams.settings import Settings


def settings_context(settings: Settings, **extra: Any) -> ParseContext:
    return ParseContext(
        namespace=settings.namespace,
        default_bind=settings.default_bind,
        allowed_targets=settings.allowed_targets,
        tls_port=settings.tls_port,
        tls_client_cas=tuple(sorted((k, str(v)) for k, v in settings.tls_client_cas.items())),
        **extra,
    )
