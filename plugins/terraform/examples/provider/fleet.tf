# One provider block for a whole fleet: every baton_service with `host` is managed over SSH,
# one multiplexed connection per host for the whole run.
variable "hosts" {
  description = "name => address of every host"
  type        = map(string)
}

variable "ssh_key_file" {
  type = string
}

variable "known_hosts_file" {
  description = "the fleet's host keys, verified out of band"
  type        = string
}

variable "release" {
  type    = string
  default = "v2"
}

provider "baton" {
  ssh {
    user        = "root"
    private_key = file(var.ssh_key_file)
    # Host-key pinning: only these keys are trusted (lines verified out of band, e.g. from
    # your inventory system); an unknown or changed key fails that host's resources.
    known_hosts = file(var.known_hosts_file)
    agent       = false
    timeout_sec = 10
  }
  # The baton the provider installs (checksum-verified, atomically) where it is missing or
  # another version: the glibc-2.17 build of `make dist`.
  baton_binary = "/opt/baton/dist/baton"
}

resource "baton_service" "web" {
  for_each = var.hosts

  host       = each.value
  name       = "web"
  version    = var.release
  exec_start = ["/opt/web/${var.release}/bin/web", "--port", "8080"]
  port       = 8080
  health = {
    http        = "/health"
    observe_sec = 5
  }
}
