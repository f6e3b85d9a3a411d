terraform {
  # The module (infrahouse/pypiserver/aws 2.3.0) requires Terraform ~> 1.5 and AWS >= 5.11, < 7.
  required_version = "~> 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.11, < 7.0.0"
    }
  }
}
