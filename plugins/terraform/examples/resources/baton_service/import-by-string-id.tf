# Terraform 1.5+: adopt the service "web" (its releases in /etc/systemd/system) at the next
# apply. Its id may also be the path of the unit directory and the name: "/srv/units/web".
import {
  to = baton_service.web
  id = "web"
}
