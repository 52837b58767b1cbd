"""The ModelDeployment contract (``modelship.io/v1alpha1``): pydantic models and the CRD built from them."""

from modelship.api.base import format_errors, parse_duration
from modelship.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION",
    "ModelDeployment", "ModelDeploymentSpec", "ModelDeploymentStatus",
    "format_errors", "parse_duration",
]
