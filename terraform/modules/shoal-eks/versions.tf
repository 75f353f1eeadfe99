terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  # AWS only: this module creates no Kubernetes objects (modules/shoal-platform
  # does). Pinned to a patch series; it declares no provider block, so the root
  # module (see examples/eks-gpu) configures the provider.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
  }
}
