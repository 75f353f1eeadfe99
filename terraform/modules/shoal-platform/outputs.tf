output "namespace" {
  description = "Namespace Shoal runs in."
  value       = local.namespace
}

output "router_url" {
  description = "In-cluster URL clients call: the HAProxy router tier, which sends each request to the replica that owns its model."
  value       = "http://shoal-router.${local.namespace}.svc:8080"
}

output "shoal_service_url" {
  description = "In-cluster URL of the Shoal service itself (any replica, round-robin)."
  value       = "http://shoal.${local.namespace}.svc:8080"
}

output "prometheus_url" {
  description = "In-cluster URL of Prometheus (what the KEDA triggers query)."
  value       = "http://${local.prometheus_release}-prometheus.${local.prometheus_namespace}.svc:9090"
}

output "keys_secret_name" {
  description = "Name of the generated Secret with the bearer keys (shoal-keys plus a hash of its content)."
  value       = one([for id in local.secret_ids : split("/", id)[3] if can(regex("^_/Secret/${local.namespace}/${local.keys_secret}(-[a-z0-9]+)?$", id))])
}

output "overlay" {
  description = "The kustomize overlay of k8s/ that is deployed."
  value       = var.shoal_overlay
}
