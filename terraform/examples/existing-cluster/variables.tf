variable "kubeconfig_path" {
  description = "Path to the kubeconfig file that reaches the cluster."
  type        = string
  default     = "~/.kube/config"

  validation {
    condition     = length(trimspace(var.kubeconfig_path)) > 0
    error_message = "kubeconfig_path must name a kubeconfig file."
  }
}

variable "kubeconfig_context" {
  description = "Context of that kubeconfig to use; null uses its current context."
  type        = string
  default     = null

  validation {
    condition     = var.kubeconfig_context == null ? true : length(trimspace(var.kubeconfig_context)) > 0
    error_message = "kubeconfig_context must be a context name, or null for the current context."
  }
}

variable "shoal_overlay" {
  description = "gpu (nodes labelled shoal.ai/pool=gpu, tainted nvidia.com/gpu=present:NoSchedule) or cpu."
  type        = string
  default     = "gpu"

  validation {
    condition     = contains(["gpu", "cpu"], var.shoal_overlay)
    error_message = "shoal_overlay must be gpu or cpu."
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

variable "install_keda" {
  description = "Install KEDA (false if the cluster already runs it)."
  type        = bool
  default     = true
}

variable "install_kube_prometheus_stack" {
  description = "Install kube-prometheus-stack (false if release kube-prometheus-stack already runs in namespace monitoring)."
  type        = bool
  default     = true
}

variable "install_nvidia_device_plugin" {
  description = "Install the NVIDIA device plugin (false where the platform provides one, as GKE does)."
  type        = bool
  default     = true
}
