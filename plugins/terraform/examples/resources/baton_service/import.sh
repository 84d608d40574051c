# A service is imported by its name (its releases in /etc/systemd/system)...
terraform import baton_service.web web

# ...or by the path of its unit directory and its name.
terraform import baton_service.web /srv/units/web
