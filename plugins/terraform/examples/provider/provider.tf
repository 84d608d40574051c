terraform {
  required_providers {
    baton = {
      source = "baton/baton"
    }
  }
}

# Without settings the provider drives the systemd of the machine Terraform runs on (over the
# system bus): run Terraform as root there. A `baton_service` with `host` is managed over SSH
# with the settings of the `ssh` block (see fleet.tf).
provider "baton" {}
