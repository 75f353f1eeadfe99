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

output "keys_secret_name" {
  description = "Name of the generated Secret that holds the bearer keys."
  value       = module.platform.keys_secret_name
}
