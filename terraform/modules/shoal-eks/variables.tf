variable "cluster_name" {
  description = "Name of the EKS cluster, also used to name and tag everything this module creates."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3-40 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version, 1.30 to 1.33 (the k8s manifests are validated against 1.32)."
  type        = string
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.3[0-3]$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version from 1.30 to 1.33, such as \"1.32\" (the preStop sleep action needs 1.30)."
  }
}

variable "subnet_ids" {
  description = "Private subnet IDs (at least two, in different availability zones) for the control plane and the node groups."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids needs at least two subnet IDs of the form subnet-xxxxxxxx."
  }
}

variable "public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public API endpoint. Empty keeps the endpoint private (reach it from inside the VPC)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "public_access_cidrs must be valid CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "system_instance_types" {
  description = "Instance types of the always-on CPU node group (KEDA, Prometheus, Grafana, and the CPU overlay's replicas)."
  type        = list(string)
  default     = ["m6i.xlarge"]

  validation {
    condition     = length(var.system_instance_types) > 0
    error_message = "system_instance_types needs at least one instance type."
  }
}

variable "system_node_count" {
  description = "Minimum, desired and maximum size of the system node group."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 2, max = 4 }

  validation {
    condition     = var.system_node_count.min >= 1 && var.system_node_count.min <= var.system_node_count.desired && var.system_node_count.desired <= var.system_node_count.max
    error_message = "system_node_count needs 1 <= min <= desired <= max."
  }
}

variable "gpu_instance_types" {
  description = "GPU instance types of the GPU node group, one GPU each. The gpu overlay's memory budget is sized for a 24 GB card (g6.xlarge: L4, g5.xlarge: A10G)."
  type        = list(string)
  default     = ["g6.xlarge"]

  validation {
    condition     = length(var.gpu_instance_types) > 0 && alltrue([for t in var.gpu_instance_types : can(regex("^(g4dn|g5|g6|g6e|p3|p4d|p5)\\.", t))])
    error_message = "gpu_instance_types must be NVIDIA GPU instance types (g4dn, g5, g6, g6e, p3, p4d, p5)."
  }
}

variable "gpu_max_nodes" {
  description = "Upper bound of the GPU node group. It scales from 0: nodes exist only while Shoal pods need them."
  type        = number
  default     = 4

  validation {
    condition     = var.gpu_max_nodes >= 1 && var.gpu_max_nodes <= 100 && floor(var.gpu_max_nodes) == var.gpu_max_nodes
    error_message = "gpu_max_nodes must be a whole number from 1 to 100."
  }
}

variable "gpu_disk_size_gb" {
  description = "Root volume of each GPU node in GiB: the NVIDIA AMI, the Shoal image (CUDA torch) and the pods' model caches."
  type        = number
  default     = 100

  validation {
    condition     = var.gpu_disk_size_gb >= 50 && var.gpu_disk_size_gb <= 2000 && floor(var.gpu_disk_size_gb) == var.gpu_disk_size_gb
    error_message = "gpu_disk_size_gb must be a whole number of GiB from 50 to 2000."
  }
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT for the GPU node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(lower(k), "aws:")])
    error_message = "tags may not use the reserved aws: prefix."
  }
}
