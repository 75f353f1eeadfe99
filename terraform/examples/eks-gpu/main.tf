# Shoal on EKS with a GPU node group that scales from 0.
#
#   cp terraform.tfvars.example terraform.tfvars   # set region and subnets
#   terraform init && terraform apply
#
# The providers that talk to the cluster are configured from the module's
# outputs, so the first apply creates the cluster and deploys onto it.

provider "aws" {
  region = var.region
  default_tags {
    tags = { "app.kubernetes.io/part-of" = "shoal" }
  }
}

data "aws_eks_cluster_auth" "shoal" {
  name = module.shoal.cluster_name
}

provider "helm" {
  kubernetes {
    host                   = module.shoal.cluster_endpoint
    cluster_ca_certificate = base64decode(module.shoal.cluster_certificate_authority_data)
    token                  = data.aws_eks_cluster_auth.shoal.token
  }
}

provider "kustomization" {
  kubeconfig_raw = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = "shoal"
    clusters        = [{ name = "shoal", cluster = { server = module.shoal.cluster_endpoint, certificate-authority-data = module.shoal.cluster_certificate_authority_data } }]
    users           = [{ name = "shoal", user = { token = data.aws_eks_cluster_auth.shoal.token } }]
    contexts        = [{ name = "shoal", context = { cluster = "shoal", user = "shoal" } }]
  })
}

module "shoal" {
  source = "../../modules/shoal-eks"

  cluster_name        = var.cluster_name
  subnet_ids          = var.subnet_ids
  public_access_cidrs = var.public_access_cidrs
  gpu_instance_types  = ["g6.xlarge"]
  gpu_max_nodes       = var.gpu_max_nodes
  shoal_overlay       = "gpu"

  tags = { environment = var.environment }
}
