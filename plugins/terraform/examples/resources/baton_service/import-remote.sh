# A service on a remote host: `<host>:<name>` (or `<host>:<unit_dir>/<name>`); the provider
# block's ssh settings apply.
terraform import 'baton_service.web["host07"]' 10.0.2.7:web
