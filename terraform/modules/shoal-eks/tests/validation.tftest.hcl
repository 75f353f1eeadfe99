# Bad input is refused before anything is planned, by the variable that names
# it. Each run sets one bad value for several variables and expects exactly
# those to fail. tests/deploy/test_terraform.py also runs every run without its
# expect_failures and checks that each error is that variable's documented
# error_message.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  cluster_name = "shoal-test"
  subnet_ids   = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

run "below_the_ranges" {
  command = plan

  variables {
    kubernetes_version = "1.29"
    subnet_ids         = ["subnet-0123456789abcdef0"]
    system_node_count  = { min = 0, desired = 0, max = 2 }
    gpu_max_nodes      = 0
    gpu_disk_size_gb   = 20
  }

  expect_failures = [var.kubernetes_version, var.subnet_ids, var.system_node_count, var.gpu_max_nodes, var.gpu_disk_size_gb]
}

run "above_the_ranges" {
  command = plan

  variables {
    kubernetes_version = "1.34"
    system_node_count  = { min = 1, desired = 5, max = 4 }
    gpu_max_nodes      = 101
    gpu_disk_size_gb   = 4000
  }

  expect_failures = [var.kubernetes_version, var.system_node_count, var.gpu_max_nodes, var.gpu_disk_size_gb]
}

run "malformed" {
  command = plan

  variables {
    kubernetes_version    = "1.32.1"
    cluster_name          = "Shoal"
    subnet_ids            = ["subnet-0123456789abcdef0", "sg-0fedcba9876543210"]
    public_access_cidrs   = ["203.0.113.0/33"]
    gpu_instance_types    = ["m6i.xlarge"]
    gpu_max_nodes         = 2.5
    gpu_capacity_type     = "RESERVED"
    system_instance_types = []
    tags                  = { "aws:owner" = "me" }
  }

  expect_failures = [
    var.kubernetes_version, var.cluster_name, var.subnet_ids, var.public_access_cidrs, var.gpu_instance_types,
    var.gpu_max_nodes, var.gpu_capacity_type, var.system_instance_types, var.tags,
  ]
}

run "api_server_open_to_the_internet" {
  command = plan

  variables {
    public_access_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.public_access_cidrs]
}
