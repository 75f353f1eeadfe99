terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  # Exact versions for a reproducible deployment (the modules accept patch releases).
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
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
