# Site: where the stack goes. Set these once in terraform.tfvars (see terraform.tfvars.example).

variable "region" {
  description = "AWS region of the stack; pipstorm reads CloudWatch there (AWS_REGION wins)."
  type        = string
}

variable "role_arn" {
  description = "IAM role Terraform assumes to manage the stack; null uses the caller's identity."
  type        = string
  default     = null
}

variable "zone_id" {
  description = "Route53 hosted zone where the module creates the index's DNS name and certificate."
  type        = string
}

variable "subnet_public_ids" {
  description = "Public subnets (two or more AZs) for the load balancer."
  type        = list(string)
}

variable "subnet_private_ids" {
  description = "Private subnets for the ECS container instances and the EFS mount targets."
  type        = list(string)
}

variable "alarm_emails" {
  description = "Addresses the module's CloudWatch alarms notify (the module requires one)."
  type        = list(string)
}

variable "environment" {
  description = "Environment tag and name part of the module's resources."
  type        = string
  default     = "development"
}

variable "service_name" {
  description = "ECS service name, also the CloudWatch dashboard name."
  type        = string
  default     = "pypiserver"
}

variable "dns_names" {
  description = "Host names in the zone; the first one is the index URL pipstorm loads."
  type        = list(string)
  default     = ["pypiserver"]
}

# Sizing: what the seed compares. Pick a preset: -var-file=baseline.tfvars (or optimized, heavy).

variable "asg_instance_type" {
  description = "EC2 instance type of the ECS container instances (the preset's first knob)."
  type        = string
}

variable "container_memory" {
  description = "Hard memory limit of the pypiserver container in MB (the preset's second knob)."
  type        = number
}

variable "asg_min_size" {
  description = "Minimum container instances; null lets the module use one per private subnet."
  type        = number
  default     = null
}

variable "asg_max_size" {
  description = "Maximum container instances; null lets the module derive it from the tasks."
  type        = number
  default     = null
}

variable "gunicorn_workers" {
  description = "Gunicorn workers per container; null lets the module derive them from memory."
  type        = number
  default     = null
}

variable "efs_throughput_mode" {
  description = "EFS throughput mode: elastic (the module's default) or bursting, where BurstCreditBalance is what runs out."
  type        = string
  default     = "elastic"
}

variable "docker_image_tag" {
  description = "pypiserver image tag on Docker Hub; pin it (e.g. v2.3.0) to compare runs fairly."
  type        = string
  default     = "latest"
}
