variable "database_password" {
  type      = string
  sensitive = true
}

resource "baton_service" "web" {
  name       = "web"
  version    = "v2"
  exec_start = ["/opt/web/bin/web", "--port", "8080"]
  port       = 8080

  health = {
    http        = "/health"
    timeout_sec = 20
    observe_sec = 5
  }

  service_type     = "notify"
  user             = "web"
  group            = "web"
  timeout_stop_sec = 45

  environment = {
    RUST_LOG = "info"
  }

  # Secrets: only in a root-owned 0600 file the unit names with EnvironmentFile=; plans show
  # (sensitive value), and unit_text, systemctl show and diagnostics never hold them.
  secret_environment = {
    DATABASE_PASSWORD = var.database_password
  }

  directives = {
    Service = {
      LimitNOFILE = "65536"
    }
  }
}

# A service without a port: readiness is "active and up for 1 s".
resource "baton_service" "worker" {
  name       = "worker"
  version    = "2024-06-01"
  exec_start = ["/opt/worker/bin/worker", "--queue", "jobs"]
}
