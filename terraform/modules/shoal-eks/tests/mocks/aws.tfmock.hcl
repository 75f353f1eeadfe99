# Values the mocked aws provider returns in place of random strings, where the
# provider itself validates them (ARN partitions, regions) or the module
# indexes into them (the cluster's CA and OIDC issuer, the node group's
# autoscaling group).

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_region" {
  defaults = {
    name = "us-east-1"
  }
}

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:user/test"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/mock"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  }
}

mock_resource "aws_eks_cluster" {
  defaults = {
    arn                   = "arn:aws:eks:us-east-1:123456789012:cluster/mock"
    endpoint              = "https://MOCK.gr7.us-east-1.eks.amazonaws.com"
    certificate_authority = [{ data = "bW9jayBjYQ==" }]
    identity              = [{ oidc = [{ issuer = "https://oidc.eks.us-east-1.amazonaws.com/id/MOCK" }] }]
  }
}

mock_resource "aws_eks_node_group" {
  defaults = {
    arn       = "arn:aws:eks:us-east-1:123456789012:nodegroup/mock/mock/mock"
    resources = [{ autoscaling_groups = [{ name = "eks-mock-asg" }], remote_access_security_group_id = "" }]
  }
}
