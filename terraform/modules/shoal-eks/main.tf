# An EKS cluster for Shoal, AWS resources only: the control plane (private
# endpoint, secrets encrypted with a KMS key), a CPU system node group, a GPU
# node group that scales from 0, the IAM the nodes and the cluster autoscaler
# need, and the autoscaling-group tags that let the autoscaler build a GPU
# node from nothing. What runs inside the cluster (KEDA, Prometheus, the
# device plugin, the autoscaler, Shoal) is modules/shoal-platform's job.

locals {
  tags = merge(var.tags, { "shoal.ai/cluster" = var.cluster_name })

  # The GPU pool's node label and taint. k8s/overlays/gpu selects and tolerates
  # exactly these (tests/deploy checks the two stay in step), and
  # modules/shoal-platform puts the NVIDIA device plugin on the same nodes.
  gpu_labels = { "shoal.ai/pool" = "gpu" }
  gpu_taint  = { key = "nvidia.com/gpu", value = "present", effect = "NO_SCHEDULE" }

  # Where the cluster autoscaler runs (modules/shoal-platform installs it
  # there): its IAM role is bound to this service account alone.
  autoscaler_namespace       = "kube-system"
  autoscaler_service_account = "cluster-autoscaler"
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

  # The API server is reachable from inside the VPC; a public endpoint exists
  # only when public_access_cidrs names who may use it.
  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.public_access_cidrs) > 0
    public_access_cidrs     = length(var.public_access_cidrs) > 0 ? var.public_access_cidrs : null
  }

  # Kubernetes Secrets (the bearer keys among them) are envelope-encrypted.
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
  disk_size       = var.gpu_disk_size_gb
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
# would offer (label, taint, GPU) from these autoscaling-group tags. (EKS tags
# the group k8s.io/cluster-autoscaler/enabled and .../<cluster> itself, which
# is what the autoscaler's auto-discovery matches.)
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

# --- the cluster autoscaler's AWS permissions (EKS Pod Identity) -------------
#
# Bound to the autoscaler's service account alone, not to the node role: a pod
# on a GPU node cannot resize node groups.

resource "aws_eks_addon" "pod_identity_agent" {
  cluster_name = aws_eks_cluster.this.name
  addon_name   = "eks-pod-identity-agent"
  tags         = local.tags

  # A DaemonSet: it needs nodes to run on.
  depends_on = [aws_eks_node_group.system]
}

resource "aws_iam_role" "cluster_autoscaler" {
  name = "${var.cluster_name}-cluster-autoscaler"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "pods.eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
  tags = local.tags
}

# Resizes only this cluster's node groups (matched by the tag EKS puts on
# their autoscaling groups).
resource "aws_iam_role_policy" "cluster_autoscaler" {
  name = "cluster-autoscaler"
  role = aws_iam_role.cluster_autoscaler.id
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

resource "aws_eks_pod_identity_association" "cluster_autoscaler" {
  cluster_name    = aws_eks_cluster.this.name
  namespace       = local.autoscaler_namespace
  service_account = local.autoscaler_service_account
  role_arn        = aws_iam_role.cluster_autoscaler.arn
  tags            = local.tags
}
