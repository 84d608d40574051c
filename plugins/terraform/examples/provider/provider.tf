terraform {
  required_providers {
    baton = {
      source = "baton/baton"
    }
  }
}

# The provider has no settings: it drives the systemd of the machine Terraform runs on
# (over the system bus), so run Terraform as root on that machine.
provider "baton" {}
