"""The AWS stack: Terraform outputs of the deployed index and its CloudWatch series.

``infra/terraform/pypiserver`` (data, not a package) deploys the index with the published
``infrahouse/pypiserver/aws`` module; this package reads what it outputs and what CloudWatch
holds about it. boto3 is imported only when AWS is actually asked.
"""
