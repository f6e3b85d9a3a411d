# heavy: the seed's sizing for heavy_load (20 clients, 5x bursts every 30 s).
# t3.medium: 2 vCPU (burstable), 4 GiB RAM; container 1024 MB (8 gunicorn workers by default).
asg_instance_type = "t3.medium"
container_memory  = 1024
