terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  # Pinned to a patch series. This module declares no provider blocks: the
  # root module (see examples/eks-gpu) configures aws, helm and kustomization.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
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
