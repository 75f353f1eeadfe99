variable "region" {
  description = "AWS region to create the cluster in (it must offer the GPU instance type)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "shoal"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3-40 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "subnet_ids" {
  description = "Private subnet IDs in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets."
  }
}

variable "public_access_cidrs" {
  description = "CIDR blocks (e.g. your office) allowed to reach the API server; empty keeps it private."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Do not open the API server to 0.0.0.0/0."
  }
}

variable "gpu_max_nodes" {
  description = "Most GPU nodes the node group may grow to (the gpu overlay's maxReplicaCount is 4)."
  type        = number
  default     = 4

  validation {
    condition     = var.gpu_max_nodes >= 1
    error_message = "gpu_max_nodes must be at least 1."
  }
}

variable "environment" {
  description = "Environment tag added to every AWS resource."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "api_keys" {
  description = "Inference keys for the Secret shoal-keys (see modules/shoal-platform). Pass them through TF_VAR_api_keys or an untracked .tfvars file, never a committed one."
  type        = list(string)
  sensitive   = true
}

variable "admin_keys" {
  description = "Operator keys (load and unload models) for the Secret shoal-keys. Pass them like api_keys."
  type        = list(string)
  sensitive   = true
}
