# Hosts behind a jump host, with a preinstalled baton (nothing is uploaded).
provider "baton" {
  alias = "private"
  ssh {
    user    = "root"
    bastion = "bastion.example.com:2222"
    # Unset private_key: the SSH agent and ~/.ssh/config apply, as for a plain `ssh`.
  }
  baton_path = "/usr/bin/baton"
}

resource "baton_service" "api" {
  provider = baton.private

  host       = "10.0.3.17"
  name       = "api"
  version    = "v7"
  exec_start = ["/opt/api/v7/api"]
  port       = 9000
}
