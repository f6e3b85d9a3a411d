# What CloudWatch needs and the module does not output: the ALB and target group ARN suffixes
# (dimensions of AWS/ApplicationELB) and the EFS file system id (dimension of AWS/EFS).

data "aws_region" "current" {}

data "aws_lb" "pypiserver" {
  arn = module.pypiserver.pypi_load_balancer_arn
}

# The module's ALB (infrahouse/website-pod) forwards HTTPS to its one target group by default.
data "aws_lb_listener" "https" {
  load_balancer_arn = module.pypiserver.pypi_load_balancer_arn
  port              = 443
}

data "aws_lb_target_group" "pypiserver" {
  arn = data.aws_lb_listener.https.default_action[0].target_group_arn
}

# The module creates its packages file system with this fixed creation token (efs-enc.tf), so
# one stack per account and region can be found by it. Read after the module has created it.
data "aws_efs_file_system" "packages" {
  creation_token = "pypi-packages-encrypted"
  depends_on     = [module.pypiserver]
}
