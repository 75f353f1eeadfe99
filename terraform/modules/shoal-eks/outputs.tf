output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_oidc_issuer_url" {
  description = "OIDC issuer URL of the cluster (for IAM roles for service accounts, should a workload need one)."
  value       = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

output "kubernetes_version" {
  description = "Kubernetes minor version of the control plane."
  value       = aws_eks_cluster.this.version
}

output "region" {
  description = "AWS region of the cluster."
  value       = data.aws_region.current.name
}

# What a root module configures its Kubernetes-facing providers from (see
# examples/eks-gpu). It becomes known only once the system node group and the
# Pod Identity agent exist, so whatever is installed through those providers
# (modules/shoal-platform) waits for nodes to run on.
output "connection" {
  description = "How to reach the API server, kubeconfig-style: host, cluster_ca_certificate (base64), cluster_name, region, oidc_issuer_url, and the exec command that issues a token (aws eks get-token)."
  value = {
    host                   = aws_eks_cluster.this.endpoint
    cluster_ca_certificate = aws_eks_cluster.this.certificate_authority[0].data
    cluster_name           = aws_eks_cluster.this.name
    region                 = data.aws_region.current.name
    oidc_issuer_url        = aws_eks_cluster.this.identity[0].oidc[0].issuer
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", aws_eks_cluster.this.name, "--region", data.aws_region.current.name]
    }
  }
  depends_on = [aws_eks_node_group.system, aws_eks_addon.pod_identity_agent]
}

output "kubeconfig" {
  description = "A kubeconfig for the cluster that gets its token from `aws eks get-token` (it holds no secret): terraform output -raw kubeconfig > shoal.kubeconfig."
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = aws_eks_cluster.this.name
    clusters        = [{ name = aws_eks_cluster.this.name, cluster = { server = aws_eks_cluster.this.endpoint, certificate-authority-data = aws_eks_cluster.this.certificate_authority[0].data } }]
    contexts        = [{ name = aws_eks_cluster.this.name, context = { cluster = aws_eks_cluster.this.name, user = aws_eks_cluster.this.name } }]
    users = [{
      name = aws_eks_cluster.this.name
      user = {
        exec = {
          apiVersion = "client.authentication.k8s.io/v1beta1"
          command    = "aws"
          args       = ["eks", "get-token", "--cluster-name", aws_eks_cluster.this.name, "--region", data.aws_region.current.name]
        }
      }
    }]
  })
  # Known, like connection, once there are nodes to deploy onto.
  depends_on = [aws_eks_node_group.system, aws_eks_addon.pod_identity_agent]
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for this cluster."
  value       = "aws eks update-kubeconfig --name ${aws_eks_cluster.this.name} --region ${data.aws_region.current.name}"
}

output "gpu_node_group" {
  description = "Name of the GPU node group (scales from 0)."
  value       = aws_eks_node_group.gpu.node_group_name
}

output "gpu_node_labels" {
  description = "Labels every GPU node carries (k8s/overlays/gpu selects on them)."
  value       = aws_eks_node_group.gpu.labels
}

output "gpu_node_taint" {
  description = "The taint every GPU node carries, as Kubernetes writes it (k8s/overlays/gpu tolerates it)."
  value       = { key = local.gpu_taint.key, value = local.gpu_taint.value, effect = "NoSchedule" }
}

output "node_role_arn" {
  description = "IAM role of the nodes of both node groups."
  value       = aws_iam_role.node.arn
}

output "kms_key_arn" {
  description = "KMS key that encrypts the cluster's Kubernetes Secrets."
  value       = aws_kms_key.secrets.arn
}

output "cluster_autoscaler" {
  description = "What modules/shoal-platform needs to run the cluster autoscaler here: cluster name, region, and the service account (namespace, name) its IAM role is bound to through EKS Pod Identity."
  value = {
    cluster_name         = aws_eks_cluster.this.name
    aws_region           = data.aws_region.current.name
    namespace            = aws_eks_pod_identity_association.cluster_autoscaler.namespace
    service_account_name = aws_eks_pod_identity_association.cluster_autoscaler.service_account
    role_arn             = aws_eks_pod_identity_association.cluster_autoscaler.role_arn
  }
}
