# Shoal on a new EKS cluster with a GPU node group that scales from 0:
# modules/shoal-eks makes the cluster (AWS only), modules/shoal-platform
# installs what runs in it (KEDA, Prometheus, the device plugin, the cluster
# autoscaler, the keys Secret, Shoal and its router).
#
#   cp terraform.tfvars.example terraform.tfvars   # region, subnets
#   export TF_VAR_api_keys='["<inference key>"]' TF_VAR_admin_keys='["<operator key>"]'
#   terraform init && terraform apply
#
# Needs the AWS CLI (v2) on PATH: the Kubernetes providers fetch their tokens
# with it.
#
# The providers that talk to the cluster are configured from the EKS module's
# connection output, which is known once the system nodes run, so one apply
# creates the cluster and deploys onto it.

provider "aws" {
  region = var.region
  default_tags {
    tags = { "app.kubernetes.io/part-of" = "shoal" }
  }
}

module "eks" {
  source = "../../modules/shoal-eks"

  cluster_name        = var.cluster_name
  subnet_ids          = var.subnet_ids
  public_access_cidrs = var.public_access_cidrs
  gpu_instance_types  = ["g6.xlarge"]
  gpu_max_nodes       = var.gpu_max_nodes

  tags = { environment = var.environment }
}

# Both providers get a fresh token from `aws eks get-token` (the AWS CLI, v2)
# on every call, so a long first apply (cluster, nodes, charts) never runs
# into an expired one. The connection output is known only once the system
# nodes run, so nothing is installed before there is a node to run it.
locals {
  connection = module.eks.connection
}

provider "helm" {
  kubernetes {
    host                   = local.connection.host
    cluster_ca_certificate = base64decode(local.connection.cluster_ca_certificate)
    exec {
      api_version = local.connection.exec.api_version
      command     = local.connection.exec.command
      args        = local.connection.exec.args
    }
  }
}

provider "kustomization" {
  kubeconfig_raw = module.eks.kubeconfig
}

module "platform" {
  source = "../../modules/shoal-platform"

  shoal_overlay = "gpu"
  api_keys      = var.api_keys
  admin_keys    = var.admin_keys

  # Scales the GPU node group from 0; its IAM role is bound to the service
  # account named here through EKS Pod Identity.
  cluster_autoscaler = module.eks.cluster_autoscaler
}
