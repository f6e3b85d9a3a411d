# optimized: the seed's fix, expected to PASS production_incident.
# t3.small: 2 vCPU (burstable), 2 GiB RAM; container 512 MB (the module's default memory).
asg_instance_type = "t3.small"
container_memory  = 512
