output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "gpu_node_group" {
  description = "Name of the GPU node group (scales from 0)."
  value       = aws_eks_node_group.gpu.node_group_name
}

output "shoal_namespace" {
  description = "Namespace Shoal runs in."
  value       = "shoal"
}

output "shoal_service_url" {
  description = "In-cluster URL of the Shoal service."
  value       = "http://shoal.shoal.svc:8080"
}

output "prometheus_url" {
  description = "In-cluster URL of Prometheus (what the KEDA triggers query)."
  value       = "http://${local.prometheus_release}-prometheus.${local.prometheus_namespace}.svc:9090"
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for this cluster."
  value       = "aws eks update-kubeconfig --name ${aws_eks_cluster.this.name} --region ${data.aws_region.current.name}"
}
