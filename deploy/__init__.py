"""Blue-green deploys of build output behind nginx (SPEC §7).

Entry points: `deploy.bluegreen.deploy_release` (called by the deploy job on the server host),
`deploy.bluegreen.rollback`, `deploy.status.site_status`, and `deploy.nginx.start_embedded` /
`stop_embedded` for `gitserve serve`.
"""

from .errors import DeployError

__all__ = ["DeployError"]
