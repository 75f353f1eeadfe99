# An EKS cluster for Shoal: a CPU system node group, a GPU node group that
# scales from 0, KEDA and kube-prometheus-stack from pinned charts, and Shoal
# itself from the kustomize overlays in k8s/.

locals {
  manifests = coalesce(var.manifests_path, "${path.module}/../../../k8s")
  tags      = merge(var.tags, { "shoal.ai/cluster" = var.cluster_name })

  # The GPU pool's node label and taint. k8s/overlays/gpu selects and tolerates
  # exactly these; tests/deploy checks the two stay in step.
  gpu_labels = { "shoal.ai/pool" = "gpu" }
  gpu_taint  = { key = "nvidia.com/gpu", value = "present", effect = "NO_SCHEDULE" }

  # The KEDA ScaledObject in k8s/base queries
  # http://kube-prometheus-stack-prometheus.monitoring.svc:9090, so the
  # release name and namespace are fixed, not variables.
  prometheus_release   = "kube-prometheus-stack"
  prometheus_namespace = "monitoring"
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# --- control plane -----------------------------------------------------------

resource "aws_iam_role" "cluster" {
  name = "${var.cluster_name}-cluster"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "eks.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_kms_key" "secrets" {
  description         = "Envelope encryption of ${var.cluster_name} Kubernetes secrets"
  enable_key_rotation = true
  # The account's default key policy, written out: IAM policies in this
  # account (the EKS cluster role among them) decide who may use the key.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.tags
}

resource "aws_eks_cluster" "this" {
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.public_access_cidrs) > 0
    public_access_cidrs     = length(var.public_access_cidrs) > 0 ? var.public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.secrets.arn
    }
  }

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  tags                      = local.tags

  depends_on = [aws_iam_role_policy_attachment.cluster]
}

# --- nodes -------------------------------------------------------------------

resource "aws_iam_role" "node" {
  name = "${var.cluster_name}-node"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ec2.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each   = toset(["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"])
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

# The cluster autoscaler runs on the nodes and resizes only this cluster's
# node groups (matched by the tag EKS puts on their autoscaling groups).
resource "aws_iam_role_policy" "cluster_autoscaler" {
  name = "cluster-autoscaler"
  role = aws_iam_role.node.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect = "Allow"
        Action = [
          "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
          "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
          "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
          "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
        ]
        Resource = "*"
      },
      {
        Effect   = "Allow"
        Action   = ["eks:DescribeNodegroup"]
        Resource = "arn:${data.aws_partition.current.partition}:eks:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:nodegroup/${var.cluster_name}/*/*"
      },
      {
        Effect   = "Allow"
        Action   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
        Resource = "*"
        Condition = {
          StringEquals = { "aws:ResourceTag/eks:cluster-name" = var.cluster_name }
        }
      },
    ]
  })
}

resource "aws_eks_node_group" "system" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "system"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  ami_type        = "AL2023_x86_64_STANDARD"
  instance_types  = var.system_instance_types
  labels          = { "shoal.ai/pool" = "system" }

  scaling_config {
    min_size     = var.system_node_count.min
    desired_size = var.system_node_count.desired
    max_size     = var.system_node_count.max
  }

  update_config {
    max_unavailable = 1
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "gpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  ami_type        = "AL2023_x86_64_NVIDIA"
  instance_types  = var.gpu_instance_types
  capacity_type   = var.gpu_capacity_type
  disk_size       = 100
  labels          = local.gpu_labels

  # Only pods that tolerate the GPU taint (Shoal's gpu overlay, the device
  # plugin) land on the expensive nodes.
  taint {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  # From zero: the cluster autoscaler adds a node when a GPU pod is pending
  # and removes it once empty.
  scaling_config {
    min_size     = 0
    desired_size = 0
    max_size     = var.gpu_max_nodes
  }

  update_config {
    max_unavailable = 1
  }

  tags       = local.tags
  depends_on = [aws_iam_role_policy_attachment.node]

  lifecycle {
    # The cluster autoscaler owns the size.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

# With no GPU node running, the cluster autoscaler learns what a new node
# would offer (label, taint, GPU) from these autoscaling-group tags.
resource "aws_autoscaling_group_tag" "gpu_node_template" {
  for_each = {
    "k8s.io/cluster-autoscaler/node-template/label/shoal.ai/pool"      = local.gpu_labels["shoal.ai/pool"]
    "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"     = "${local.gpu_taint.value}:NoSchedule"
    "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu" = "1"
  }
  autoscaling_group_name = aws_eks_node_group.gpu.resources[0].autoscaling_groups[0].name

  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}

# --- cluster add-ons (pinned charts) ------------------------------------------

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  namespace  = "kube-system"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_chart_version

  values = [yamlencode({
    autoDiscovery = { clusterName = aws_eks_cluster.this.name }
    awsRegion     = data.aws_region.current.name
    extraArgs = {
      "balance-similar-node-groups"   = true
      "skip-nodes-with-local-storage" = false
      "scale-down-unneeded-time"      = "10m"
    }
  })]

  depends_on = [aws_eks_node_group.system]
}

resource "helm_release" "nvidia_device_plugin" {
  name             = "nvidia-device-plugin"
  namespace        = "nvidia-device-plugin"
  create_namespace = true
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.nvidia_device_plugin_chart_version

  values = [yamlencode({
    nodeSelector = local.gpu_labels
    tolerations  = [{ key = local.gpu_taint.key, operator = "Exists", effect = "NoSchedule" }]
  })]

  depends_on = [aws_eks_node_group.system]
}

resource "helm_release" "keda" {
  name             = "keda"
  namespace        = "keda"
  create_namespace = true
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version

  depends_on = [aws_eks_node_group.system]
}

resource "helm_release" "kube_prometheus_stack" {
  name             = local.prometheus_release
  namespace        = local.prometheus_namespace
  create_namespace = true
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_chart_version

  values = [yamlencode({
    prometheus = {
      prometheusSpec = {
        # Pick up ServiceMonitors and PrometheusRules in every namespace,
        # whatever their labels.
        serviceMonitorSelectorNilUsesHelmValues = false
        ruleSelectorNilUsesHelmValues           = false
        retention                               = "15d"
      }
    }
    grafana = {
      sidecar = {
        dashboards = { enabled = true, label = "grafana_dashboard", labelValue = "1", searchNamespace = "ALL",
        folderAnnotation = "grafana_folder", provider = { foldersFromFilesStructure = true } }
      }
    }
  })]

  depends_on = [aws_eks_node_group.system]
}

# --- Shoal, from the kustomize overlay ------------------------------------------

data "kustomization_build" "shoal" {
  path = "${local.manifests}/overlays/${var.shoal_overlay}"
}

# Namespaces first, then everything else (the CRDs they use come from the
# KEDA and kube-prometheus-stack releases).
resource "kustomization_resource" "shoal_p0" {
  for_each = data.kustomization_build.shoal.ids_prio[0]
  manifest = data.kustomization_build.shoal.manifests[each.value]

  depends_on = [helm_release.keda, helm_release.kube_prometheus_stack]
}

resource "kustomization_resource" "shoal_p1" {
  for_each = data.kustomization_build.shoal.ids_prio[1]
  manifest = data.kustomization_build.shoal.manifests[each.value]

  depends_on = [kustomization_resource.shoal_p0, helm_release.nvidia_device_plugin, helm_release.cluster_autoscaler]
}

resource "kustomization_resource" "shoal_p2" {
  for_each = data.kustomization_build.shoal.ids_prio[2]
  manifest = data.kustomization_build.shoal.manifests[each.value]

  depends_on = [kustomization_resource.shoal_p1]
}
