"""gitserve: a self-hosted Git server that speaks Gitolite's access language."""

__version__ = "0.1.0"
