output "kubeconfig_command" {
  description = "Run this to point kubectl at the new cluster."
  value       = module.eks.kubeconfig_command
}

output "router_url" {
  description = "In-cluster URL clients call (the model-affinity router); from a laptop: kubectl -n shoal port-forward svc/shoal-router 8080."
  value       = module.platform.router_url
}

output "shoal_service_url" {
  description = "In-cluster URL of the Shoal service itself."
  value       = module.platform.shoal_service_url
}

output "prometheus_url" {
  description = "In-cluster URL of Prometheus."
  value       = module.platform.prometheus_url
}

output "gpu_node_group" {
  description = "Name of the GPU node group (scales from 0)."
  value       = module.eks.gpu_node_group
}
