# A service deployed by other means (the baton CLI, Ansible) as it is now: its active release,
# whether that is enabled for boot, its main PID and every release on disk (the ones kept for
# rollback too).
data "baton_service" "legacy" {
  name = "legacy"
}

output "legacy_active_version" {
  value = data.baton_service.legacy.version
}

output "legacy_releases" {
  value = data.baton_service.legacy.releases
}

# A service this configuration manages: referring to the resource makes Terraform read it after
# the resource was applied, so it shows the release just deployed and its new main PID.
data "baton_service" "web" {
  name     = baton_service.web.name
  unit_dir = baton_service.web.unit_dir
}

output "web_main_pid" {
  value = data.baton_service.web.main_pid
}

# The same service on another machine: `host` reads it there over SSH, with the provider's `ssh`
# settings (`baton status --json` runs on the host; nothing is changed).
data "baton_service" "web_on_app1" {
  host = "10.0.3.17"
  name = "web"
}

output "web_on_app1_version" {
  value = data.baton_service.web_on_app1.version
}
