# The module's input contract: the defaults pass their own checks, and bad
# input is refused, by the variable that names it, before anything is planned.
#
# These runs touch no provider. tests/deploy/test_terraform.py runs them
# offline on the module's variables.tf alone (the helm and kustomization
# providers cannot be installed on this project's machines), and also runs
# every run without its expect_failures to check that each error is that
# variable's documented error_message. In the module itself, with those
# providers and a cluster to plan against, they run as they are.

variables {
  api_keys   = ["inference-key-0123456789abcdef"]
  admin_keys = ["operator-key-0123456789abcdef"]
}

run "defaults_are_valid" {
  command = plan
}

run "every_option_set" {
  command = plan

  variables {
    shoal_overlay                 = "cpu"
    api_keys                      = ["inference-key-0123456789abcdef", "rotated-key_0123456789abcdef=="]
    install_keda                  = false
    install_kube_prometheus_stack = false
    install_nvidia_device_plugin  = false
    cluster_autoscaler = {
      cluster_name                = "shoal"
      aws_region                  = "eu-west-1"
      service_account_annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::123456789012:role/ca" }
    }
  }
}

run "chart_ranges_instead_of_pins" {
  command = plan

  variables {
    keda_chart_version                  = "~> 2.16"
    kube_prometheus_stack_chart_version = "66.x"
    nvidia_device_plugin_chart_version  = ">= 0.17.0"
    cluster_autoscaler_chart_version    = "9.43"
  }

  expect_failures = [
    var.keda_chart_version, var.kube_prometheus_stack_chart_version, var.nvidia_device_plugin_chart_version,
    var.cluster_autoscaler_chart_version,
  ]
}

run "unknown_overlay_and_no_inference_key" {
  command = plan

  variables {
    shoal_overlay = "tpu"
    api_keys      = []
  }

  expect_failures = [var.shoal_overlay, var.api_keys]
}

run "inference_key_with_a_space" {
  command = plan

  variables {
    api_keys = ["inference key 0123456789abcdef"]
  }

  expect_failures = [var.api_keys]
}

# (admin_keys is checked against api_keys, so each admin_keys run keeps
# api_keys valid: Terraform skips a rule whose other variable is invalid.)
run "short_operator_key" {
  command = plan

  variables {
    admin_keys = ["short"]
  }

  expect_failures = [var.admin_keys]
}

run "two_operator_keys_in_one_entry" {
  command = plan

  variables {
    admin_keys = ["operator-key-0123456789abcdef\nsecond-key-0123456789abcdef"]
  }

  expect_failures = [var.admin_keys]
}

run "an_inference_key_as_operator_key" {
  command = plan

  variables {
    admin_keys = ["inference-key-0123456789abcdef"]
  }

  expect_failures = [var.admin_keys]
}

run "autoscaler_without_a_region" {
  command = plan

  variables {
    cluster_autoscaler = { cluster_name = "shoal", aws_region = "Virginia" }
  }

  expect_failures = [var.cluster_autoscaler]
}
