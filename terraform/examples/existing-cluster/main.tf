# Shoal on a cluster you already have (GKE, AKS, EKS, on premises): only
# modules/shoal-platform, pointed at the cluster through a kubeconfig.
#
#   cp terraform.tfvars.example terraform.tfvars   # kubeconfig, context, overlay
#   export TF_VAR_api_keys='["<inference key>"]' TF_VAR_admin_keys='["<operator key>"]'
#   terraform init && terraform apply
#
# For the gpu overlay, label and taint the GPU nodes as the overlay expects:
#
#   kubectl label nodes <gpu nodes> shoal.ai/pool=gpu
#   kubectl taint nodes <gpu nodes> nvidia.com/gpu=present:NoSchedule
#
# (or set both on the node pool, so new nodes get them). Where the platform
# already installs the NVIDIA device plugin (GKE, the GPU operator), set
# install_nvidia_device_plugin = false. The cluster's own autoscaler, if any,
# adds GPU nodes: this example installs none.

locals {
  kubeconfig_path = pathexpand(var.kubeconfig_path)
}

provider "helm" {
  kubernetes {
    config_path    = local.kubeconfig_path
    config_context = var.kubeconfig_context
  }
}

provider "kustomization" {
  kubeconfig_path = local.kubeconfig_path
  context         = var.kubeconfig_context
}

module "platform" {
  source = "../../modules/shoal-platform"

  shoal_overlay                 = var.shoal_overlay
  api_keys                      = var.api_keys
  admin_keys                    = var.admin_keys
  install_keda                  = var.install_keda
  install_kube_prometheus_stack = var.install_kube_prometheus_stack
  install_nvidia_device_plugin  = var.install_nvidia_device_plugin
}
