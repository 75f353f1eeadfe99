output "kubeconfig_command" {
  description = "Run this to point kubectl at the new cluster."
  value       = module.shoal.kubeconfig_command
}

output "shoal_service_url" {
  description = "In-cluster URL of Shoal (port-forward svc/shoal 8080 -n shoal to reach it from a laptop)."
  value       = module.shoal.shoal_service_url
}

output "prometheus_url" {
  description = "In-cluster URL of Prometheus."
  value       = module.shoal.prometheus_url
}
