terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  # Exact versions for a reproducible deployment (the module accepts patch
  # releases). No cloud provider: the cluster exists already.
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "2.17.0"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "0.9.6"
    }
  }
}
