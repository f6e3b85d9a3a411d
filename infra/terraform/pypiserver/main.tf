# The index under test: the published module, pinned, never re-implemented here. It builds ECS on
# EC2, EFS for /data/packages, an ALB with a certificate and DNS name, and htpasswd credentials in
# Secrets Manager. Only the sizing knobs the seed compares are variables; the rest are fixed to
# what a disposable load-test stack wants (no backups, force-destroyable buckets).
module "pypiserver" {
  source  = "registry.infrahouse.com/infrahouse/pypiserver/aws"
  version = "2.3.0"

  providers = {
    aws     = aws
    aws.dns = aws
  }

  environment           = var.environment
  service_name          = var.service_name
  dns_names             = var.dns_names
  zone_id               = var.zone_id
  asg_subnets           = var.subnet_private_ids
  load_balancer_subnets = var.subnet_public_ids
  alarm_emails          = var.alarm_emails

  # Sizing: what the presets (baseline.tfvars, optimized.tfvars, heavy.tfvars) set.
  asg_instance_type = var.asg_instance_type
  asg_min_size      = var.asg_min_size
  asg_max_size      = var.asg_max_size
  container_memory  = var.container_memory
  gunicorn_workers  = var.gunicorn_workers

  efs_throughput_mode = var.efs_throughput_mode
  docker_image_tag    = var.docker_image_tag

  # A load-test stack is created and destroyed around a run: nothing to back up or keep.
  enable_efs_backup        = false
  access_log_force_destroy = true
  backups_force_destroy    = true
}
