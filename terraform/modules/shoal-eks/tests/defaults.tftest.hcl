# The module with only its required inputs, as an operator gets it, planned and
# applied against a mocked aws provider (no AWS account, no network):
#
#   terraform init -plugin-dir <provider mirror>   # or plain `terraform init`
#   terraform test
#
# tests/deploy/test_terraform.py runs this in CI.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  cluster_name = "shoal-test"
  subnet_ids   = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

run "defaults_plan" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.version == "1.32"
    error_message = "the default Kubernetes version is 1.32"
  }

  # --- private endpoint and encryption, on by default ---------------------
  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_private_access && !aws_eks_cluster.this.vpc_config[0].endpoint_public_access
    error_message = "by default the API server has a private endpoint only"
  }
  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].resources == toset(["secrets"])
    error_message = "Kubernetes Secrets are envelope-encrypted"
  }
  assert {
    condition     = aws_kms_key.secrets.enable_key_rotation
    error_message = "the secrets key rotates"
  }
  assert {
    condition     = contains(aws_eks_cluster.this.enabled_cluster_log_types, "audit")
    error_message = "the control plane writes audit logs"
  }

  # --- the GPU node group: from zero, tainted, labelled -----------------------
  assert {
    condition = (aws_eks_node_group.gpu.scaling_config[0].min_size == 0
      && aws_eks_node_group.gpu.scaling_config[0].desired_size == 0
    && aws_eks_node_group.gpu.scaling_config[0].max_size == 4)
    error_message = "the GPU node group scales from 0 to gpu_max_nodes (4)"
  }
  assert {
    condition     = aws_eks_node_group.gpu.taint == toset([{ key = "nvidia.com/gpu", value = "present", effect = "NO_SCHEDULE" }])
    error_message = "GPU nodes carry the nvidia.com/gpu=present:NoSchedule taint that k8s/overlays/gpu tolerates"
  }
  assert {
    condition     = aws_eks_node_group.gpu.labels == tomap({ "shoal.ai/pool" = "gpu" })
    error_message = "GPU nodes carry the shoal.ai/pool=gpu label that k8s/overlays/gpu selects on"
  }
  assert {
    condition     = aws_eks_node_group.gpu.ami_type == "AL2023_x86_64_NVIDIA" && aws_eks_node_group.gpu.instance_types == tolist(["g6.xlarge"]) && aws_eks_node_group.gpu.disk_size == 100
    error_message = "GPU nodes run the NVIDIA AMI on g6.xlarge with a 100 GiB disk"
  }
  assert {
    condition     = length(aws_eks_node_group.system.taint) == 0 && aws_eks_node_group.system.scaling_config[0].min_size == 2
    error_message = "the system node group is untainted and always has nodes"
  }

  # --- what the cluster autoscaler needs to build a GPU node from nothing ---
  assert {
    condition = (aws_autoscaling_group_tag.gpu_node_template["k8s.io/cluster-autoscaler/node-template/label/shoal.ai/pool"].tag[0].value == "gpu"
      && aws_autoscaling_group_tag.gpu_node_template["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"].tag[0].value == "present:NoSchedule"
    && aws_autoscaling_group_tag.gpu_node_template["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"].tag[0].value == "1")
    error_message = "the GPU autoscaling group advertises the node's label, taint and GPU"
  }
  assert {
    condition     = aws_eks_pod_identity_association.cluster_autoscaler.namespace == "kube-system" && aws_eks_pod_identity_association.cluster_autoscaler.service_account == "cluster-autoscaler"
    error_message = "the autoscaler's IAM role is bound to kube-system/cluster-autoscaler"
  }
  assert {
    condition     = jsondecode(aws_iam_role.cluster_autoscaler.assume_role_policy).Statement[0].Principal.Service == "pods.eks.amazonaws.com"
    error_message = "the autoscaler's role is assumed through EKS Pod Identity"
  }
  assert {
    condition     = aws_eks_addon.pod_identity_agent.addon_name == "eks-pod-identity-agent"
    error_message = "the Pod Identity agent add-on is installed"
  }
}

run "outputs_are_wired" {
  # Apply against the mocks: computed attributes get the values in
  # tests/mocks/aws.tfmock.hcl, so each output can be traced to its source.

  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].provider[0].key_arn == aws_kms_key.secrets.arn && output.kms_key_arn == aws_kms_key.secrets.arn
    error_message = "the cluster encrypts Secrets with the module's KMS key"
  }
  assert {
    condition     = aws_iam_role_policy.cluster_autoscaler.role == aws_iam_role.cluster_autoscaler.id && aws_iam_role.cluster_autoscaler.id != aws_iam_role.node.id
    error_message = "the autoscaler's permissions sit on its own role, not on the node role"
  }
  assert {
    condition     = alltrue([for tag in aws_autoscaling_group_tag.gpu_node_template : tag.autoscaling_group_name == "eks-mock-asg"])
    error_message = "the node-template tags go on the GPU node group's autoscaling group"
  }

  assert {
    condition = (output.cluster_name == "shoal-test"
      && output.cluster_endpoint == "https://MOCK.gr7.us-east-1.eks.amazonaws.com"
      && output.cluster_certificate_authority_data == "bW9jayBjYQ=="
      && output.cluster_oidc_issuer_url == "https://oidc.eks.us-east-1.amazonaws.com/id/MOCK"
    && output.region == "us-east-1")
    error_message = "the cluster outputs come from the cluster"
  }
  assert {
    condition = (output.connection.host == output.cluster_endpoint
      && output.connection.cluster_ca_certificate == output.cluster_certificate_authority_data
      && output.connection.cluster_name == "shoal-test"
      && output.connection.region == "us-east-1"
      && output.connection.oidc_issuer_url == output.cluster_oidc_issuer_url
    && output.connection.exec.args == ["eks", "get-token", "--cluster-name", "shoal-test", "--region", "us-east-1"])
    error_message = "the connection output holds what a kubeconfig needs"
  }
  assert {
    condition = (yamldecode(output.kubeconfig).clusters[0].cluster.server == output.cluster_endpoint
      && yamldecode(output.kubeconfig).clusters[0].cluster["certificate-authority-data"] == output.cluster_certificate_authority_data
    && yamldecode(output.kubeconfig).users[0].user.exec.command == "aws")
    error_message = "the kubeconfig output points at the cluster and fetches its token with aws eks get-token"
  }
  assert {
    condition     = output.kubeconfig_command == "aws eks update-kubeconfig --name shoal-test --region us-east-1"
    error_message = "kubeconfig_command names the cluster and region"
  }
  assert {
    condition     = output.gpu_node_labels == tomap({ "shoal.ai/pool" = "gpu" }) && output.gpu_node_taint == { key = "nvidia.com/gpu", value = "present", effect = "NoSchedule" } && output.gpu_node_group == "gpu"
    error_message = "the GPU node outputs describe the node group"
  }
  assert {
    condition = (output.cluster_autoscaler.cluster_name == "shoal-test"
      && output.cluster_autoscaler.aws_region == "us-east-1"
      && output.cluster_autoscaler.namespace == "kube-system"
      && output.cluster_autoscaler.service_account_name == "cluster-autoscaler"
    && output.cluster_autoscaler.role_arn == aws_iam_role.cluster_autoscaler.arn)
    error_message = "the cluster_autoscaler output is what modules/shoal-platform's cluster_autoscaler input takes"
  }
  assert {
    condition     = output.node_role_arn == aws_iam_role.node.arn && output.cluster_arn == aws_eks_cluster.this.arn && output.kubernetes_version == "1.32"
    error_message = "the remaining outputs are wired"
  }
}

run "public_endpoint_when_asked" {
  command = plan

  variables {
    public_access_cidrs = ["203.0.113.0/24"]
  }

  assert {
    condition = (aws_eks_cluster.this.vpc_config[0].endpoint_public_access
      && aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    && aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["203.0.113.0/24"]))
    error_message = "public_access_cidrs opens the public endpoint to those blocks only, and keeps the private one"
  }
}

run "sizes_flow_through" {
  command = plan

  variables {
    kubernetes_version = "1.33"
    gpu_instance_types = ["g5.xlarge", "g6.xlarge"]
    gpu_max_nodes      = 10
    gpu_disk_size_gb   = 200
    gpu_capacity_type  = "SPOT"
    system_node_count  = { min = 1, desired = 3, max = 6 }
  }

  assert {
    condition = (aws_eks_cluster.this.version == "1.33"
      && aws_eks_node_group.gpu.scaling_config[0].min_size == 0
      && aws_eks_node_group.gpu.scaling_config[0].max_size == 10
      && aws_eks_node_group.gpu.disk_size == 200
      && aws_eks_node_group.gpu.capacity_type == "SPOT"
      && aws_eks_node_group.gpu.instance_types == tolist(["g5.xlarge", "g6.xlarge"])
    && aws_eks_node_group.system.scaling_config[0].desired_size == 3)
    error_message = "the size inputs reach the node groups, and the GPU group still starts from 0"
  }
}
