"""What pipstorm needs to know about an AWS stack: the index, its credentials, its dimensions.

A stack is read from Terraform outputs (``pipstorm.infra.aws.terraform_outputs``) or assembled by
hand; either way the CloudWatch side only needs the names below, and the load side only the URL and
the credentials. Kept apart from both so that neither depends on how the stack was found.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from pipstorm.infra.credentials import Credentials


@dataclass(frozen=True)
class StackDimensions:
    """CloudWatch dimension values of one pypiserver stack; None where the stack did not say.

    Field names are the Terraform output names of ``infra/terraform/pypiserver`` (the ones the
    published module outputs itself keep the module's names).
    """

    ecs_cluster_name: str | None = None
    ecs_service_name: str | None = None
    efs_file_system_id: str | None = None
    alb_arn_suffix: str | None = None
    target_group_arn_suffix: str | None = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The output names a stack may provide, in declaration order."""
        return tuple(item.name for item in fields(cls))

    def value(self, name: str) -> str | None:
        """The value of one dimension field by its output name."""
        result = getattr(self, name)
        return result if isinstance(result, str) and result else None


@dataclass(frozen=True)
class AwsStack:
    """An index deployed on AWS: where to send load, how to log in, what to watch.

    ``region`` is the stack's own (from its outputs); ``AWS_REGION`` still wins when set, because
    that is where the user's credentials and the seed's scripts point.
    """

    index_url: str
    credentials: Credentials | None
    dimensions: StackDimensions
    region: str | None = None
    source: Path | None = None  # the Terraform root it was read from, for messages
