# pipstorm reads these with `terraform -chdir=DIR output -json` (`--target terraform:DIR`).
# The first three carry the seed's names, so its `export PYPI_URL=$(terraform ... output -raw
# pypi_url)` lines keep working.

output "pypi_url" {
  description = "Root URL of the index (the first DNS name of the module's ALB); its simple index is <url>/simple/."
  value       = module.pypiserver.pypi_server_urls[0]
}

output "pypi_server_urls" {
  description = "All index URLs, one per DNS name (the module's own output)."
  value       = module.pypiserver.pypi_server_urls
}

output "pypi_username" {
  description = "Username for HTTP Basic auth against the index."
  sensitive   = true
  value       = module.pypiserver.pypi_username
}

output "pypi_password" {
  description = "Password for HTTP Basic auth against the index (sensitive: never printed)."
  sensitive   = true
  value       = module.pypiserver.pypi_password
}

output "aws_region" {
  description = "Region of the stack, where CloudWatch holds its metrics."
  value       = data.aws_region.current.name
}

output "ecs_cluster_name" {
  description = "ECS cluster name (dimension ClusterName of AWS/ECS)."
  value       = module.pypiserver.ecs_cluster_name
}

output "ecs_service_name" {
  description = "ECS service name (dimension ServiceName of AWS/ECS)."
  value       = module.pypiserver.ecs_service_name
}

output "efs_file_system_id" {
  description = "EFS file system holding /data/packages (dimension FileSystemId of AWS/EFS)."
  value       = data.aws_efs_file_system.packages.id
}

output "alb_arn_suffix" {
  description = "ALB ARN suffix (dimension LoadBalancer of AWS/ApplicationELB)."
  value       = data.aws_lb.pypiserver.arn_suffix
}

output "target_group_arn_suffix" {
  description = "Target group ARN suffix (dimension TargetGroup of AWS/ApplicationELB)."
  value       = data.aws_lb_target_group.pypiserver.arn_suffix
}

output "capacity_info" {
  description = "Instance capacity and task packing as the module computed them."
  value       = module.pypiserver.capacity_info
}

output "cloudwatch_dashboard_url" {
  description = "The module's CloudWatch dashboard."
  value       = module.pypiserver.cloudwatch_dashboard_url
}
