variable "shoal_overlay" {
  description = "Which kustomize overlay of k8s/ to deploy: gpu (nodes labelled shoal.ai/pool=gpu and tainted nvidia.com/gpu=present:NoSchedule, one GPU per pod) or cpu (any node)."
  type        = string
  default     = "gpu"

  validation {
    condition     = contains(["gpu", "cpu"], var.shoal_overlay)
    error_message = "shoal_overlay must be gpu or cpu."
  }
}

variable "manifests_path" {
  description = "Path to the k8s/ directory of the Shoal repository. Defaults to the copy beside this module."
  type        = string
  default     = null
}

# The bearer keys become the Secret shoal-keys that every Shoal pod mounts
# (k8s/base/deployment.yaml): `api-keys` and `admin-keys`, one key per line.
variable "api_keys" {
  description = "Inference keys (Secret shoal-keys, entry api-keys): clients send one as `Authorization: Bearer <key>`. At least one; make each with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`."
  type        = list(string)
  sensitive   = true

  validation {
    condition     = length(var.api_keys) > 0 && alltrue([for k in var.api_keys : length(k) >= 16 && can(regex("^[A-Za-z0-9._~+/-]+=*$", k))])
    error_message = "api_keys needs at least one key, each at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (then optional =)."
  }
}

variable "admin_keys" {
  description = "Operator keys (Secret shoal-keys, entry admin-keys): the only keys that may load and unload models. At least one, none of them also an inference key."
  type        = list(string)
  sensitive   = true

  validation {
    condition     = length(var.admin_keys) > 0 && alltrue([for k in var.admin_keys : length(k) >= 16 && can(regex("^[A-Za-z0-9._~+/-]+=*$", k))])
    error_message = "admin_keys needs at least one key, each at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (then optional =)."
  }

  validation {
    condition     = length(setintersection(toset(var.admin_keys), toset(var.api_keys))) == 0
    error_message = "admin_keys must not repeat a key of api_keys: an inference key could then load and unload models."
  }
}

variable "install_keda" {
  description = "Install KEDA, which scales Shoal on Prometheus metrics. Set false only where KEDA already runs (the ScaledObject needs its CRDs)."
  type        = bool
  default     = true
}

variable "keda_chart_version" {
  description = "Exact version of the kedacore/keda Helm chart."
  type        = string
  default     = "2.16.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.keda_chart_version))
    error_message = "keda_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "install_kube_prometheus_stack" {
  description = "Install kube-prometheus-stack as release kube-prometheus-stack in namespace monitoring. Set false only where that release already runs: the KEDA triggers query http://kube-prometheus-stack-prometheus.monitoring.svc:9090, and the ServiceMonitors and PrometheusRule need its CRDs."
  type        = bool
  default     = true
}

variable "kube_prometheus_stack_chart_version" {
  description = "Exact version of the prometheus-community/kube-prometheus-stack Helm chart."
  type        = string
  default     = "66.3.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.kube_prometheus_stack_chart_version))
    error_message = "kube_prometheus_stack_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "install_nvidia_device_plugin" {
  description = "Install the NVIDIA device plugin on the GPU nodes (shoal.ai/pool=gpu), which advertises nvidia.com/gpu. Set false where the platform provides one (GKE, the NVIDIA GPU operator)."
  type        = bool
  default     = true
}

variable "nvidia_device_plugin_chart_version" {
  description = "Exact version of the NVIDIA k8s-device-plugin Helm chart (advertises nvidia.com/gpu on GPU nodes)."
  type        = string
  default     = "0.17.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nvidia_device_plugin_chart_version))
    error_message = "nvidia_device_plugin_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "cluster_autoscaler" {
  description = "Install the cluster autoscaler for AWS autoscaling groups (what scales an EKS GPU node group from 0): the cluster's name and region, and the service account its IAM role is bound to (modules/shoal-eks's cluster_autoscaler output is this object). Annotations are for IAM roles for service accounts; EKS Pod Identity needs none. null (the default) installs none: other clouds bring their own autoscaler."
  type = object({
    cluster_name                = string
    aws_region                  = string
    namespace                   = optional(string, "kube-system")
    service_account_name        = optional(string, "cluster-autoscaler")
    service_account_annotations = optional(map(string), {})
  })
  default = null

  validation {
    condition = var.cluster_autoscaler == null ? true : (
      can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_autoscaler.cluster_name))
      && can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.cluster_autoscaler.aws_region))
      && can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.cluster_autoscaler.namespace))
      && can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.cluster_autoscaler.service_account_name))
    )
    error_message = "cluster_autoscaler needs an EKS cluster_name, an AWS region such as us-east-1, and a Kubernetes namespace and service account name."
  }
}

variable "cluster_autoscaler_chart_version" {
  description = "Exact version of the kubernetes/autoscaler cluster-autoscaler Helm chart (scales the GPU node group from 0)."
  type        = string
  default     = "9.43.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.cluster_autoscaler_chart_version))
    error_message = "cluster_autoscaler_chart_version must be an exact version (x.y.z), not a range."
  }
}
