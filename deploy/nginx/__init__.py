"""nginx for the sites, split by concern: paths.py (the embedded prefix, configs, the
permissions unprivileged workers need), control.py (`nginx -t`, reload, start/stop of the
embedded master, its error log), ports.py (listen ports, taken ports, free process ports).
The names below are the package's interface; callers say `from deploy import nginx`."""

from .control import (EmbeddedNginx, Reload, binary, error_log_size, error_log_tail, reload,
                      running_pid, start_embedded, stop_embedded, test)
from .paths import (NginxError, error_log, is_embedded, lock, main_conf, pid_file, prefix,
                    site_conf, site_confs, sites_conf_dir, unreachable_parent, write_main_conf)
from .ports import free_port, listen_ports, ports_taken

__all__ = ["EmbeddedNginx", "NginxError", "Reload", "binary", "error_log", "error_log_size",
           "error_log_tail", "free_port", "is_embedded", "listen_ports", "lock", "main_conf",
           "pid_file", "ports_taken", "prefix", "reload", "running_pid", "site_conf", "site_confs",
           "sites_conf_dir", "start_embedded", "stop_embedded", "test", "unreachable_parent",
           "write_main_conf"]
