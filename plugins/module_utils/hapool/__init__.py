# hapool: auto-scaling, self-healing HAProxy pools.
#
# The packages below are stdlib-only so that Ansible ships them to the target with each
# module (AnsiballZ) and so that they are unit-testable without Ansible. Modules import
# them as ``ansible.module_utils.hapool.<name>``.
