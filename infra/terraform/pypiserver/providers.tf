# Like the module's own test root (test_data/pypiserver): one AWS provider, optionally through an
# assumed role, passed to the module for both its resources and its Route53 records (aws.dns).
provider "aws" {
  region = var.region

  dynamic "assume_role" {
    for_each = var.role_arn != null ? [1] : []
    content {
      role_arn = var.role_arn
    }
  }

  default_tags {
    tags = {
      "created_by" : "pipstorm/infra/terraform/pypiserver"
    }
  }
}
