# A service as it is now: its active release, whether that is enabled for boot, its main PID and
# every release on disk (the ones kept for rollback too).
data "baton_service" "web" {
  name = "web"
}

output "web_active_version" {
  value = data.baton_service.web.version
}

output "web_releases" {
  value = data.baton_service.web.releases
}

# Reading a service this configuration manages: referring to the resource makes Terraform read
# it after the resource was applied, so it shows the release just deployed.
data "baton_service" "api" {
  name     = baton_service.api.name
  unit_dir = baton_service.api.unit_dir
}

output "api_main_pid" {
  value = data.baton_service.api.main_pid
}
