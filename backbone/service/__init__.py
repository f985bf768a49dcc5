"""The service app factory: lifecycle, typed context, health, metrics, errors, telemetry."""

from backbone.service.app import create_service_app, metrics_response, serve
from backbone.service.config import ServiceSettings
from backbone.service.context import (
    ContextSpec,
    OutboxParts,
    Parts,
    SqlParts,
    context_dependency,
)
from backbone.service.problems import PROBLEM_JSON, ProblemError, problem_response
from backbone.service.runtime import ConsumerSpec, Runtime, ServiceSpec

__all__ = [
    "PROBLEM_JSON",
    "ConsumerSpec",
    "ContextSpec",
    "OutboxParts",
    "Parts",
    "ProblemError",
    "Runtime",
    "ServiceSettings",
    "ServiceSpec",
    "SqlParts",
    "context_dependency",
    "create_service_app",
    "metrics_response",
    "problem_response",
    "serve",
]
