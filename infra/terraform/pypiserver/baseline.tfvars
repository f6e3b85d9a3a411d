# baseline: the seed's incident configuration (2025-12-27), expected to FAIL production_incident.
# t3.micro: 2 vCPU (burstable), 1 GiB RAM; pypiserver container capped at 128 MB.
# Too little RAM for page cache over EFS metadata scans: swap, iowait, 5xx under bursts.
asg_instance_type = "t3.micro"
container_memory  = 128
