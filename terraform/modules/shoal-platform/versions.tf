terraform {
  # 1.9: a variable's validation may refer to another variable (admin_keys).
  required_version = ">= 1.9.0, < 2.0.0"

  # Kubernetes only, no cloud provider: this module runs on any cluster.
  # Pinned to a patch series; it declares no provider blocks, so the root
  # module (see examples/) points helm and kustomization at the cluster.
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17.0"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9.6"
    }
  }
}
